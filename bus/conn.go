package bus

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/tenancy"
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
	// CAFile is the PEM file of the mesh's CA: the peer's certificate is
	// verified against it (meshmon tls ca makes it). Without it the
	// system's roots verify a peer that serves TLS.
	CAFile string `json:"ca_file,omitempty"`
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
		u = strings.TrimSpace(u)
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return bad("url %q is not a server URL like nats://host:4222", u)
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return bad("url %q: scheme %q is not one of nats, tls, ws, wss", redactURL(u), pu.Scheme)
		}
		if p := pu.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return bad("url %q: port %q must be a number from 1 to 65535", redactURL(u), p)
			}
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
	if c.CredsFile != "" {
		if err := checkCredsFile(c.CredsFile); err != nil {
			return bad("creds file %s: %v", c.CredsFile, err)
		}
	}
	if c.NKeySeedFile != "" {
		if err := checkSeedFile(c.NKeySeedFile); err != nil {
			return bad("nkey seed file %s: %v", c.NKeySeedFile, err)
		}
	}
	if c.CAFile != "" {
		if err := checkCAFile(c.CAFile); err != nil {
			return bad("ca file %s: %v", c.CAFile, err)
		}
	}
	return nil
}

// checkCAFile reads a PEM CA file now.
func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return errors.New("holds no PEM certificate; want the ca.pem of 'meshmon tls ca'")
	}
	return nil
}

// checkCredsFile reads a NATS credentials file now, so a missing or mangled
// file is reported as such and not as a server that does not answer.
func checkCredsFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(err)
	}
	jwt, err := nkeys.ParseDecoratedJWT(b)
	if err != nil || strings.Count(jwt, ".") != 2 || strings.ContainsAny(jwt, " \n") {
		return errors.New("holds no user JWT; want a .creds file as written by 'nsc' or 'meshmon tenant creds'")
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return errors.New("holds no user nkey seed; want a .creds file as written by 'nsc' or 'meshmon tenant creds'")
	}
	kp.Wipe()
	return nil
}

// checkSeedFile reads a user nkey seed file now.
func checkSeedFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return errors.New("holds no nkey seed (SU...)")
	}
	defer kp.Wipe()
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return errors.New("holds a seed that is not a user nkey (SU...)")
	}
	return nil
}

// fileErr is a file error without the path, which the caller names.
func fileErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// redactURL drops user info from one URL, for messages.
func redactURL(u string) string {
	if pu, err := url.Parse(u); err == nil && pu.User != nil {
		pu.User = nil
		return pu.String()
	}
	return u
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
		parts[i] = redactURL(strings.TrimSpace(u))
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
		nats.CustomReconnectDelay(reconnectDelay()),
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
		// A meshmon tenant user takes its replies on its own inbox
		// prefix, the only one its permissions let it read.
		if b, err := os.ReadFile(c.CredsFile); err == nil {
			if id, err := tenancy.CredsIdentity(b); err == nil && id.Role != "" {
				o = append(o, nats.CustomInboxPrefix(tenancy.InboxPrefix(id.User)))
			}
		}
	}
	if c.CAFile != "" {
		o = append(o, nats.RootCAs(c.CAFile))
	}
	return append(o, opts...), nil
}

// reconnectDelay returns the reconnect wait of one connection: the retry
// policy from reconnectMin to reconnectMax, so that many pollers do not
// reconnect in lock step after a peer restart. nats.go calls it from the
// connection's one reconnect goroutine, with attempts counting from 1 again
// at each disconnect.
func reconnectDelay() func(attempts int) time.Duration {
	b := backoff.New(reconnectMin, reconnectMax)
	return func(attempts int) time.Duration {
		if attempts <= 1 {
			b.Reset()
		}
		return b.Next()
	}
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
// "connect nats://127.0.0.1:4222: no server answering (dial tcp
// 127.0.0.1:4222: connect: connection refused)" that wraps ErrNoServer.
// What can be known at once fails at once: a host name that does not
// resolve (ErrUnresolvable), credentials the server refuses, a TLS
// mismatch. ctx must have time left. The returned connection reconnects like
// one from Connect.
func ConnectWait(ctx context.Context, cfg ConnConfig, opts ...nats.Option) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
		return nil, fmt.Errorf("connect %s: %w: the timeout leaves no time to connect", cfg.redactedURL(), ErrInvalidConfig)
	}
	if err := resolveAll(ctx, cfg.url()); err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.redactedURL(), err)
	}
	o, err := cfg.options(append(opts, nats.RetryOnFailedConnect(false)))
	if err != nil {
		return nil, err
	}
	var last error
	retry := backoff.New(reconnectMin, time.Second)
	for {
		dial := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			dial = max(min(dial, time.Until(dl)), 10*time.Millisecond)
		}
		nc, err := nats.Connect(cfg.url(), append(o, nats.Timeout(dial))...)
		if err == nil {
			return nc, nil
		}
		if permanentConnErr(err) {
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthRevoked) {
				return nil, fmt.Errorf("connect %s: %w (check --user and --password, --nkey or --creds; a central run with --trust takes a tenant user's .creds file, from 'meshmon tenant creds')", cfg.redactedURL(), err)
			}
			if strings.Contains(err.Error(), "x509") && cfg.CAFile == "" {
				return nil, fmt.Errorf("connect %s: %w (the peer's certificate is of the mesh's CA: give --tlsca ca.pem)", cfg.redactedURL(), err)
			}
			return nil, fmt.Errorf("connect %s: %w", cfg.redactedURL(), err)
		}
		last = err
		if !retry.Wait(ctx) {
			return nil, fmt.Errorf("connect %s: %w (%s)", cfg.redactedURL(), ErrNoServer, dialReason(cfg.url(), last))
		}
	}
}

// permanentConnErr reports whether a connect error will not go away by trying
// again: the server refused the credentials, or TLS does not match.
func permanentConnErr(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrClientCertOrRootCAsRequired) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization") || strings.Contains(msg, "authentication") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509")
}

// dialReason says why nothing answered: the TCP dial error of the first
// URL ("connection refused") rather than nats.go's generic "no servers
// available for connection".
func dialReason(urls string, err error) string {
	if errors.Is(err, nats.ErrNoServers) {
		pu, perr := url.Parse(strings.TrimSpace(strings.Split(urls, ",")[0]))
		if perr == nil {
			host := pu.Host
			if pu.Port() == "" {
				host = net.JoinHostPort(pu.Hostname(), strconv.Itoa(nats.DefaultPort))
			}
			conn, derr := net.DialTimeout("tcp", host, time.Second)
			if derr != nil {
				var op *net.OpError
				if errors.As(derr, &op) {
					return op.Error()
				}
				return derr.Error()
			}
			conn.Close()
			return host + " accepts TCP connections but no NATS server answered there"
		}
	}
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return "no answer before the timeout"
	}
	return err.Error()
}

// resolveAll fails with ErrUnresolvable if no host name of urls resolves.
// IP addresses need no look-up. One URL that resolves is enough.
func resolveAll(ctx context.Context, urls string) error {
	var firstErr error
	for _, u := range strings.Split(urls, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			continue
		}
		host := pu.Hostname()
		if net.ParseIP(host) != nil {
			return nil
		}
		_, err = net.DefaultResolver.LookupHost(ctx, host)
		if err == nil {
			return nil
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && !dnsErr.IsNotFound {
			return nil // the resolver itself failed: let the dial say more
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%w: host %q: %v", ErrUnresolvable, host, err)
		}
	}
	return firstErr
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

// ConnectDomain is ConnectWait and JetStream in site's JetStream domain,
// reached from central ("": the JetStream of the peer connected to). The
// connection's inbox is the site's task reply prefix (SiteInboxPrefix):
// the site's link carries back only its task replies. The caller closes
// the connection.
func ConnectDomain(ctx context.Context, cfg ConnConfig, site string) (*nats.Conn, jetstream.JetStream, error) {
	var opts []nats.Option
	if site != "" {
		opts = append(opts, nats.CustomInboxPrefix(SiteInboxPrefix(site)))
	}
	nc, err := ConnectWait(ctx, cfg, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if site != "" && err == nil {
		js, err = jetstream.NewWithDomain(nc, site)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
