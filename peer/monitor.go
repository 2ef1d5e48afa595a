package peer

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The HTTP monitor is the peer's own, not nats-server's: nats-server's
// monitor has no authentication and would show anyone every tenant's
// accounts, users and streams. The peer serves nats-server's handlers
// (the same paths: /varz, /connz, /jsz, ...) behind HTTP basic auth with
// Config.HTTPUser and HTTPPassword, over HTTPS with the peer's certificate.
// /healthz alone answers without auth, for load balancers and
// orchestrators, and then only as asked with no query (its options name
// an account and a stream and say whether they exist: a review used it
// so, 2026-12-07) and with its status only (plainHealth): what is wrong
// is for the monitor's credentials.

// monitorHandler is the monitor's mux for srv.
func (c Config) monitorHandler(srv *server.Server) http.Handler {
	mux := http.NewServeMux()
	for path, h := range map[string]http.HandlerFunc{
		"/varz":      srv.HandleVarz,
		"/connz":     srv.HandleConnz,
		"/routez":    srv.HandleRoutez,
		"/gatewayz":  srv.HandleGatewayz,
		"/leafz":     srv.HandleLeafz,
		"/subsz":     srv.HandleSubsz,
		"/accountz":  srv.HandleAccountz,
		"/accstatz":  srv.HandleAccountStatz,
		"/jsz":       srv.HandleJsz,
		"/raftz":     srv.HandleRaftz,
		"/ipqueuesz": srv.HandleIPQueuesz,
		"/stacksz":   srv.HandleStacksz,
		"/":          srv.HandleRoot,
	} {
		mux.Handle(path, c.basicAuth(h))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if c.authorized(r) {
			srv.HandleHealthz(w, r)
			return
		}
		r = r.Clone(r.Context())
		r.URL.RawQuery = ""
		plainHealth(srv.HandleHealthz)(w, r)
	})
	return mux
}

// plainHealth serves h's health answer without what it says is wrong:
// its status and code only. An unhealthy server's answer names an
// account and a stream ("JetStream stream 'A... > EVENTS' is not
// current"), which only the monitor's credentials may read.
func plainHealth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &healthRecorder{header: http.Header{}, code: http.StatusOK}
		h(rec, r)
		var answer map[string]any
		if err := json.Unmarshal(rec.body.Bytes(), &answer); err != nil {
			answer = map[string]any{}
		}
		plain := map[string]any{"status": answer["status"]}
		if code, ok := answer["status_code"]; ok {
			plain["status_code"] = code
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.code)
		_ = json.NewEncoder(w).Encode(plain)
	}
}

// healthRecorder keeps a handler's answer for plainHealth.
type healthRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *healthRecorder) Header() http.Header         { return r.header }
func (r *healthRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *healthRecorder) WriteHeader(code int)        { r.code = code }

// basicAuth wraps h with HTTP basic auth; without an HTTP password (only
// with Insecure) h is served as it is.
func (c Config) basicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="meshmon"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries the monitor's credentials, or the
// monitor has no password (only with Insecure).
func (c Config) authorized(r *http.Request) bool {
	if c.HTTPPassword == "" {
		return true
	}
	u, p, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u), []byte(c.HTTPUser)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(c.HTTPPassword)) == 1
}

// monitor is the peer's running HTTP monitor.
type monitor struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startMonitor listens on the HTTP address and serves the monitor, over
// HTTPS when k is set.
func (c Config) startMonitor(srv *server.Server, k *certs, log *slog.Logger) (*monitor, error) {
	addr := c.httpAddr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: c.monitorHandler(srv), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if k != nil {
		hs.TLSConfig = k.server()
	}
	m := &monitor{srv: hs, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		var err error
		if k != nil {
			err = hs.ServeTLS(ln, "", "")
		} else {
			err = hs.Serve(ln)
		}
		_ = err // http.ErrServerClosed after close; a serve error ends the monitor only
	}()
	return m, nil
}

// Addr is where the monitor listens.
func (m *monitor) Addr() string { return m.ln.Addr().String() }

// close stops the monitor and waits for it.
func (m *monitor) close() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = m.srv.Close()
	}
	<-m.done
}
