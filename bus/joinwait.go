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

// AddSiteJoin adds site at central (AddSite) and returns the join info
// its peer needs (JoinWait for wantCentral peers). The join info comes
// first: a central without a leaf listener cannot take sites, and nothing
// is recorded then. A site that exists is an error wrapping ErrSiteExists,
// returned with the join info.
func AddSiteJoin(ctx context.Context, js jetstream.JetStream, site string, wantCentral int, now time.Time) (JoinInfo, error) {
	info, err := JoinWait(ctx, js, wantCentral)
	if err != nil {
		return info, err
	}
	return info, AddSite(ctx, js, site, now)
}

// SiteJoin is the join info of a site central sources already; an error
// wrapping ErrSiteNotFound for another.
func SiteJoin(ctx context.Context, js jetstream.JetStream, site string) (JoinInfo, error) {
	sites, err := Sites(ctx, js)
	if err != nil {
		return JoinInfo{}, err
	}
	for _, s := range sites {
		if s.Name == site {
			return Join(ctx, js)
		}
	}
	return JoinInfo{}, fmt.Errorf("site %s: %w", site, ErrSiteNotFound)
}
