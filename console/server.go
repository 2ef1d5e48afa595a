package console

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

//go:embed assets
var assets embed.FS

// Defaults of Config.
const (
	DefaultSessionIdle = 30 * time.Minute
	DefaultSessionMax  = 12 * time.Hour
	DefaultMaxSessions = 256
	// DefaultMaxUserSessions bounds one user's sessions (MaxUserSessions).
	DefaultMaxUserSessions = 16
	// readTimeout bounds what one page reads from NATS.
	readTimeout = 15 * time.Second
)

// Dialer opens a NATS connection to central with the options the console
// gives (the user's credentials among them). cmd/meshmon dials the peer
// in process.
type Dialer func(ctx context.Context, opts ...nats.Option) (*nats.Conn, error)

// Config is a console.
type Config struct {
	// Listen is host:port; port 0 picks one (Server.Addr says which). A
	// host left out means 127.0.0.1, as for the peer's monitor: the
	// console is on loopback unless the address says otherwise.
	Listen string
	// TLS serves HTTPS (the peer's certificate). Nil serves plaintext,
	// which Insecure must allow.
	TLS      *tls.Config
	Insecure bool
	// Dial connects to central as the user who logs in.
	Dial Dialer
	// Tenants reads the tenants' EVENTS streams for the ops credential's
	// replays (its account imports their live events only); nil at a
	// central without accounts, where the ops credential's events page
	// is live only.
	Tenants TenantEvents
	// PasswordLogin offers a user and password on the login page: a
	// central with its own users (--auth-user) rather than tenants'
	// credentials.
	PasswordLogin bool
	// SessionIdle ends a session unused this long; SessionMax ends any
	// session this long after login.
	SessionIdle time.Duration
	SessionMax  time.Duration
	// MaxSessions bounds the sessions (each holds a NATS connection).
	MaxSessions int
	// MaxUserSessions bounds the sessions of one user (its account and
	// name): a login past it ends the user's least recently used
	// session, so that one credential cannot hold every session of the
	// console. Not with PasswordLogin, where every login is one user's.
	MaxUserSessions int
	// LoginFailures refused logins within LoginWindow, from one client
	// address or for one user, refuse that address or user for
	// LoginLockout (429) before central sees its credential.
	LoginFailures int
	LoginWindow   time.Duration
	LoginLockout  time.Duration
	Log           *slog.Logger
	Now           func() time.Time
}

// DefaultConfig returns a Config with the session defaults set.
func DefaultConfig() Config {
	return Config{SessionIdle: DefaultSessionIdle, SessionMax: DefaultSessionMax, MaxSessions: DefaultMaxSessions, MaxUserSessions: DefaultMaxUserSessions,
		LoginFailures: DefaultLoginFailures, LoginWindow: DefaultLoginWindow, LoginLockout: DefaultLoginLockout, Now: time.Now}
}

// Validate reports the first problem, naming the field and the rule; the
// error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Listen == "":
		return bad("listen is empty; give host:port")
	case c.TLS == nil && !c.Insecure:
		return bad("listen %s: no TLS certificate: the console serves the peer's (--tls-cert, --tls-key), or plaintext with --insecure", c.Listen)
	case c.Dial == nil:
		return bad("dial is not set")
	case c.SessionIdle <= 0:
		return bad("session idle %s must be positive", c.SessionIdle)
	case c.SessionMax < c.SessionIdle:
		return bad("session max %s must be at least the idle time %s", c.SessionMax, c.SessionIdle)
	case c.MaxSessions < 1:
		return bad("max sessions %d must be at least 1", c.MaxSessions)
	case c.MaxUserSessions < 1:
		return bad("max user sessions %d must be at least 1", c.MaxUserSessions)
	case c.LoginFailures < 1:
		return bad("login failures %d must be at least 1", c.LoginFailures)
	case c.LoginWindow <= 0:
		return bad("login window %s must be positive", c.LoginWindow)
	case c.LoginLockout <= 0:
		return bad("login lockout %s must be positive", c.LoginLockout)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen %q is not host:port", c.Listen)
	}
	return nil
}

// Server is a running console. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pages    map[string]*template.Template
	sessions *sessions
	limiter  *loginLimiter
	mux      *http.ServeMux

	ctx    context.Context // ends every handler's request at Close
	cancel context.CancelFunc
	ln     net.Listener
	srv    *http.Server
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a console of cfg, not yet listening: Handler serves it as
// is (tests), Start listens.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log.With("component", "console"), pages: pages}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sessions = newSessions(cfg)
	s.limiter = newLoginLimiter(cfg)
	s.mux = s.routes()
	return s, nil
}

// routes maps the console's paths to their handlers.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.withSession(s.logout))
	mux.HandleFunc("GET /{$}", s.withSession(s.sitesPage))
	mux.HandleFunc("GET /sites/{site}", s.withSession(s.sitePage))
	mux.HandleFunc("GET /sites/{site}/devices/{device}", s.withSession(s.devicePage))
	mux.HandleFunc("GET /events", s.withSession(s.eventsPage))
	mux.HandleFunc("GET /events/stream", s.withSession(s.eventStream))
	mux.HandleFunc("GET /alarms", s.withSession(s.alarmsPage))
	return mux
}

// Handler is the console's HTTP handler, with its security headers.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if s.cfg.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		s.mux.ServeHTTP(w, r)
	})
}

// Start listens on Listen and serves until Close; it returns once the
// listener is open.
func (s *Server) Start() error {
	addr := s.cfg.Listen
	if host, port, _ := net.SplitHostPort(addr); host == "" {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	} else {
		s.log.Warn("the console serves plaintext HTTP (--insecure): logins, credentials and events cross the network readable", "listen", ln.Addr().String())
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("console stopped serving", "err", err)
		}
	})
	s.wg.Go(func() { s.sessions.expire(s.ctx, s.log) })
	scheme := "https"
	if s.cfg.TLS == nil {
		scheme = "http"
	}
	s.log.Info("console listening", "url", scheme+"://"+ln.Addr().String())
	return nil
}

// Addr is where the console listens (host:port with the actual port);
// empty before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close ends every request and session and stops listening; it waits for
// the console's goroutines. It is safe to call more than once, and on a nil
// Server (a peer that serves no console).
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		s.cancel()
		if s.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.srv.Shutdown(ctx); err != nil {
				s.srv.Close()
			}
			cancel()
		}
		s.wg.Wait()
		s.sessions.closeAll()
	})
}

// URL is the console's address as a browser opens it; empty before Start,
// and for a nil Server.
func (s *Server) URL() string {
	if s == nil || s.ln == nil {
		return ""
	}
	if s.cfg.TLS == nil {
		return "http://" + s.Addr()
	}
	return "https://" + s.Addr()
}
