package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/selfmetrics"
)

// metricsFlags are the --metrics-* flags of a process that serves its own
// Prometheus metrics (docs/metrics.md); env names the flags' environment
// variables. ownCert: the process has a certificate of its own (a peer's
// --tls-cert), which the listener serves; otherwise it takes
// --metrics-tls-cert and --metrics-tls-key.
func metricsFlags(env func(string) []string, ownCert bool) []cli.Flag {
	fs := []cli.Flag{
		&cli.StringFlag{Name: "metrics-listen", EnvVars: env("METRICS_LISTEN"), Usage: "serve Prometheus metrics on /metrics at host:port, over HTTPS (a host left out means 127.0.0.1; off when empty)"},
		&cli.BoolFlag{Name: "metrics-plaintext", EnvVars: env("METRICS_PLAINTEXT"), Usage: "serve the metrics over plain HTTP (warns at start)"},
		&cli.StringFlag{Name: "metrics-user", Value: "prometheus", EnvVars: env("METRICS_USER"), Usage: "user name a scraper gives with --metrics-password-file"},
		&cli.StringFlag{Name: "metrics-password-file", EnvVars: env("METRICS_PASSWORD_FILE"), Usage: "file holding the password a scraper must give (HTTP basic auth); without it anyone who reaches the address reads the metrics"},
	}
	if !ownCert {
		fs = append(fs,
			&cli.StringFlag{Name: "metrics-tls-cert", EnvVars: env("METRICS_TLS_CERT"), Usage: "certificate (PEM) the metrics listener serves, from 'meshmon tls issue'"},
			&cli.StringFlag{Name: "metrics-tls-key", EnvVars: env("METRICS_TLS_KEY"), Usage: "the certificate's private key (PEM)"})
	}
	return fs
}

// checkMetrics checks the --metrics-* flags before the process starts
// what takes time: ownCert says whether the process has a certificate of
// its own to serve them with (a peer's --tls-cert).
func checkMetrics(c *cli.Context, ownCert bool) error {
	if c.String("metrics-listen") == "" {
		return nil
	}
	cfg := selfmetrics.Config{Listen: c.String("metrics-listen"), Plaintext: c.Bool("metrics-plaintext"), User: c.String("metrics-user")}
	cert, key := c.String("metrics-tls-cert"), c.String("metrics-tls-key")
	switch {
	case cfg.Plaintext && (cert != "" || key != ""):
		return fmt.Errorf("--metrics-plaintext with --metrics-tls-cert: give one or the other")
	case (cert == "") != (key == ""):
		return fmt.Errorf("--metrics-tls-cert and --metrics-tls-key go together; give both")
	}
	if !cfg.Plaintext && (ownCert || c.String("metrics-tls-cert") != "" || c.String("metrics-tls-key") != "") {
		cfg.TLS = &tls.Config{}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}
	return nil
}

// serveMetrics starts the metrics listener of --metrics-listen with cs;
// nil without the flag. own is the process's own TLS config (a peer's),
// nil when it has none.
func serveMetrics(c *cli.Context, own *tls.Config, log *slog.Logger, cs ...prometheus.Collector) (*selfmetrics.Server, error) {
	addr := c.String("metrics-listen")
	if addr == "" {
		return nil, nil
	}
	cfg := selfmetrics.Config{Listen: addr, TLS: own, Plaintext: c.Bool("metrics-plaintext"), User: c.String("metrics-user")}
	if cfg.Plaintext {
		cfg.TLS = nil
	}
	if cert, key := c.String("metrics-tls-cert"), c.String("metrics-tls-key"); cert != "" || key != "" {
		if cert == "" || key == "" {
			return nil, fmt.Errorf("--metrics-tls-cert and --metrics-tls-key go together; give both")
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--metrics-tls-cert: %w", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		if cfg.Plaintext {
			return nil, fmt.Errorf("--metrics-plaintext with --metrics-tls-cert: give one or the other")
		}
	}
	if f := c.String("metrics-password-file"); f != "" {
		pw, err := readSecret(f)
		if err != nil {
			return nil, fmt.Errorf("--metrics-password-file: %w", err)
		}
		cfg.Password = pw
	}
	s, err := selfmetrics.Serve(cfg, selfmetrics.NewRegistry(cs...), log)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	log.Info("serving metrics", "url", s.URL())
	return s, nil
}
