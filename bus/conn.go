package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig is how a client (poller, CLI) reaches a peer. It is the one
// place where client authentication is chosen: at most one of Password,
// NKeySeedFile and CredsFile may be set.
type ConnConfig struct {
	URL          string `json:"url"`                      // nats://host:port, comma-separated for several; empty means nats.DefaultURL
	User         string `json:"user,omitempty"`           // with Password
	Password     string `json:"password,omitempty"`       // with User
	NKeySeedFile string `json:"nkey_seed_file,omitempty"` // a user nkey seed (SU...)
	CredsFile    string `json:"creds_file,omitempty"`     // a JWT user credentials file
	Name         string `json:"name,omitempty"`           // connection name shown by the server; empty means "meshmon"
}

// Reconnect backoff bounds.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// Validate reports the first problem, naming the field and the rule. The
// error wraps ErrInvalidConfig.
func (c ConnConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	for _, u := range strings.Split(c.url(), ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Host == "" {
			return bad("url %q is not a server URL like nats://host:4222", u)
		}
	}
	n := 0
	if c.Password != "" {
		n++
	}
	if c.NKeySeedFile != "" {
		n++
	}
	if c.CredsFile != "" {
		n++
	}
	if n > 1 {
		return bad("password, nkey seed file and creds file are alternatives; set at most one")
	}
	if c.User != "" && c.Password == "" {
		return bad("user %q has no password; set both or neither", c.User)
	}
	if c.Password != "" && c.User == "" {
		return bad("password is set without a user; set both or neither")
	}
	return nil
}

func (c ConnConfig) url() string {
	if c.URL == "" {
		return nats.DefaultURL
	}
	return c.URL
}

// redactedURL is the URL without any user info, for messages.
func (c ConnConfig) redactedURL() string {
	parts := strings.Split(c.url(), ",")
	for i, u := range parts {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.User != nil {
			pu.User = nil
			parts[i] = pu.String()
		}
	}
	return strings.Join(parts, ",")
}

// options translates the config to nats options: auth, name and an endless,
// bounded, jittered reconnect backoff. opts come last and win.
func (c ConnConfig) options(opts []nats.Option) ([]nats.Option, error) {
	name := c.Name
	if name == "" {
		name = "meshmon"
	}
	o := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(8 << 20),
	}
	switch {
	case c.Password != "":
		o = append(o, nats.UserInfo(c.User, c.Password))
	case c.NKeySeedFile != "":
		nk, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %w", c.NKeySeedFile, err)
		}
		o = append(o, nk)
	case c.CredsFile != "":
		o = append(o, nats.UserCredentials(c.CredsFile))
	}
	return append(o, opts...), nil
}

// reconnectDelay doubles from reconnectMin to reconnectMax with ±20% jitter,
// so that many pollers do not reconnect in lock step after a peer restart.
func reconnectDelay(attempts int) time.Duration {
	d := reconnectMin
	for i := 1; i < attempts && d < reconnectMax; i++ {
		d *= 2
	}
	d = min(d, reconnectMax)
	return d - d/5 + rand.N(2*d/5+1)
}

// Connect connects with cfg for a long-running client: if no server answers
// yet it returns a connection that keeps trying in the background
// (nats.RetryOnFailedConnect), and it reconnects forever with a bounded
// backoff. It logs nothing; pass ConnLogger(log) among opts for that.
func Connect(cfg ConnConfig, opts ...nats.Option) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, err := cfg.options(append([]nats.Option{nats.RetryOnFailedConnect(true)}, opts...))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.url(), o...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.redactedURL(), err)
	}
	return nc, nil
}

// ConnectWait connects with cfg for a command-line call: it keeps trying
// until a server answers or ctx is done. Then it fails with an error like
// "connect nats://127.0.0.1:4222: no server answering" that wraps
// ErrNoServer. A server that refuses the credentials fails at once. The
// returned connection reconnects like one from Connect.
func ConnectWait(ctx context.Context, cfg ConnConfig, opts ...nats.Option) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, err := cfg.options(append(opts, nats.RetryOnFailedConnect(false)))
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		dial := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			dial = max(min(dial, time.Until(dl)), 10*time.Millisecond)
		}
		nc, err := nats.Connect(cfg.url(), append(o, nats.Timeout(dial))...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
			errors.Is(err, nats.ErrAuthRevoked) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			return nil, fmt.Errorf("connect %s: %w", cfg.redactedURL(), err)
		}
		t := time.NewTimer(min(reconnectDelay(attempt), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect %s: %w", cfg.redactedURL(), ErrNoServer)
		case <-t.C:
		}
	}
}

// ConnLogger returns a nats option that logs disconnects, reconnects,
// closes and asynchronous errors to log.
func ConnLogger(log *slog.Logger) nats.Option {
	return func(o *nats.Options) error {
		o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "url", nc.ConnectedUrlRedacted(), "err", err)
			} else {
				log.Info("nats disconnected")
			}
		}
		o.ReconnectedCB = func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}
		o.ConnectedCB = func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}
		o.ClosedCB = func(nc *nats.Conn) {
			log.Debug("nats connection closed")
		}
		o.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats async error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats async error", "err", err)
		}
		return nil
	}
}
