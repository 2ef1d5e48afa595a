// Package selfmetrics serves a meshmon process's own Prometheus metrics
// (`--metrics-listen`): a registry of the process's collectors with Go's
// and the process's, on /metrics, over HTTPS with the process's
// certificate, or plaintext when asked for (docs/metrics.md).
//
// The name keeps it apart from the METRICS stream, which holds the
// samples pollers take of devices; these are metrics about meshmon itself.
package selfmetrics

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is how a process serves its metrics.
type Config struct {
	// Listen is host:port; a host left out means 127.0.0.1.
	Listen string
	// TLS serves HTTPS; nil serves plaintext, which Plaintext must allow.
	TLS       *tls.Config
	Plaintext bool
	// User and Password, when Password is set, are the HTTP basic auth
	// a scraper must give.
	User, Password string
}

// Validate names the field and the rule a Config breaks.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("metrics listen %q: want host:port (%v)", c.Listen, err)
	}
	if c.TLS == nil && !c.Plaintext {
		return fmt.Errorf("%w: give a certificate (the peer's --tls-cert and --tls-key, or --metrics-tls-cert and --metrics-tls-key) or ask for plaintext with --metrics-plaintext", ErrNoTLS)
	}
	if c.TLS != nil && c.Plaintext {
		return errors.New("metrics: --metrics-plaintext with a certificate; give one or the other")
	}
	if c.Password != "" && c.User == "" {
		return errors.New("metrics: a password without a user")
	}
	return nil
}

// addr is Listen with 127.0.0.1 for a host left out.
func (c Config) addr() string {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil || host != "" {
		return c.Listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// NewRegistry is a registry of its own (not the global one) with the Go
// runtime's and the process's collectors, and cs.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return reg
}

// Server is a running metrics listener. Close it once.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	scheme string
	done   chan struct{}
	once   sync.Once
}

// Serve listens on cfg.Listen and serves g's metrics on /metrics until
// Close. It warns on log when it serves plaintext.
func Serve(cfg Config, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.addr())
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", cfg.addr(), err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", cfg.basicAuth(promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	})))
	s := &Server{ln: ln, scheme: "https", done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg.TLS,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}}
	if cfg.TLS == nil {
		s.scheme = "http"
		log.Warn("metrics served in plaintext (--metrics-plaintext): whoever sits on the network path reads them", "addr", s.Addr())
	}
	if cfg.Password == "" {
		log.Info("metrics served without authentication: whoever reaches the address reads the names of tenants, sites and pollers in them (docs/metrics.md)", "addr", s.Addr())
	}
	go func() {
		defer close(s.done)
		if cfg.TLS != nil {
			_ = s.srv.ServeTLS(ln, "", "")
		} else {
			_ = s.srv.Serve(ln)
		}
	}()
	return s, nil
}

// basicAuth wraps h with HTTP basic auth when c has a password.
func (c Config) basicAuth(h http.Handler) http.Handler {
	if c.Password == "" {
		return h
	}
	user, pw := []byte(c.User), []byte(c.Password)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), user) != 1 || subtle.ConstantTimeCompare([]byte(p), pw) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="meshmon metrics"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the metrics URL: https://host:port/metrics, or http:// when
// plaintext.
func (s *Server) URL() string { return s.scheme + "://" + s.Addr() + "/metrics" }

// Close stops the server and waits for it. It may be called on nil, and
// more than once.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
	})
	<-s.done
}
