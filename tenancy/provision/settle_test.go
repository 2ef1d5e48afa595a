package provision

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAccountSettling: what a cluster answers while a new account's JWT
// reaches its members is asked again; anything else is not.
func TestAccountSettling(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create stream METRICS: %w", nats.ErrNoResponders), true},
		{fmt.Errorf("create stream EVENTS: %w", jetstream.ErrJetStreamNotEnabled), true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10039, Description: "jetstream not enabled for account"}, true},
		{fmt.Errorf("create stream EVENTS: %w", nats.ErrTimeout), true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10047, Description: "insufficient resources"}, false},
		{errors.New("stream name already in use"), false},
	} {
		if got := accountSettling(tc.err); got != tc.want {
			t.Errorf("accountSettling(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
