package selfmetrics

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Files is a metrics listener as a command's --metrics-* flags give it:
// the certificate and key by file name (Config holds them loaded).
type Files struct {
	Listen, User      string
	Plaintext         bool
	CertFile, KeyFile string
	Password          string // read from --metrics-password-file
}

// Check checks f before the process starts what takes time, without
// reading a file; own: the process has a certificate of its own to serve
// with (a peer's --tls-cert). No Listen is no listener, and no error.
func (f Files) Check(own bool) error {
	if f.Listen == "" {
		return nil
	}
	switch {
	case f.Plaintext && (f.CertFile != "" || f.KeyFile != ""):
		return errPlaintextCert
	case (f.CertFile == "") != (f.KeyFile == ""):
		return errCertKey
	}
	cfg := Config{Listen: f.Listen, Plaintext: f.Plaintext, User: f.User}
	if !f.Plaintext && (own || f.CertFile != "") {
		cfg.TLS = &tls.Config{}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}
	return nil
}

// Serve starts the listener f describes with cs; nil without Listen. own
// is the process's own TLS config (a peer's), nil when it has none; a
// certificate of f's own is served instead.
func (f Files) Serve(own *tls.Config, log *slog.Logger, cs ...prometheus.Collector) (*Server, error) {
	if f.Listen == "" {
		return nil, nil
	}
	cfg := Config{Listen: f.Listen, TLS: own, Plaintext: f.Plaintext, User: f.User, Password: f.Password}
	if cfg.Plaintext {
		cfg.TLS = nil
	}
	if f.CertFile != "" || f.KeyFile != "" {
		if f.CertFile == "" || f.KeyFile == "" {
			return nil, errCertKey
		}
		pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--metrics-tls-cert: %w", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		if cfg.Plaintext {
			return nil, errPlaintextCert
		}
	}
	s, err := Serve(cfg, NewRegistry(cs...), log)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	log.Info("serving metrics", "url", s.URL())
	return s, nil
}
