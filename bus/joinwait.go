package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TooFewCentralError is JoinWait's error when fewer central peers than it
// waited for had published their leaf URL.
type TooFewCentralError struct{ Have, Want int }

func (e *TooFewCentralError) Error() string {
	return fmt.Sprintf("only %d of %d central peers have published their leaf URL", e.Have, e.Want)
}

// JoinWait is Join once at least want central peers have published their
// leaf URL, so that a join token lists them all; it asks again every
// 200 ms until ctx ends. It then fails with Join's last error or, if Join
// answered, a *TooFewCentralError.
func JoinWait(ctx context.Context, js jetstream.JetStream, want int) (JoinInfo, error) {
	for {
		info, err := Join(ctx, js)
		if err == nil && len(info.Central) >= want {
			return info, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = &TooFewCentralError{Have: len(info.Central), Want: want}
			}
			return info, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
