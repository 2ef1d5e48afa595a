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

// metricsFiles is the listener the --metrics-* flags describe; the
// password file is read only when read is set (to serve).
func metricsFiles(c *cli.Context, read bool) (selfmetrics.Files, error) {
	f := selfmetrics.Files{Listen: c.String("metrics-listen"), User: c.String("metrics-user"), Plaintext: c.Bool("metrics-plaintext"),
		CertFile: c.String("metrics-tls-cert"), KeyFile: c.String("metrics-tls-key")}
	if pf := c.String("metrics-password-file"); read && f.Listen != "" && pf != "" {
		pw, err := readSecret(pf)
		if err != nil {
			return f, fmt.Errorf("--metrics-password-file: %w", err)
		}
		f.Password = pw
	}
	return f, nil
}

// checkMetrics checks the --metrics-* flags before the process starts
// what takes time: ownCert says whether the process has a certificate of
// its own to serve them with (a peer's --tls-cert).
func checkMetrics(c *cli.Context, ownCert bool) error {
	f, _ := metricsFiles(c, false)
	return f.Check(ownCert)
}

// serveMetrics starts the metrics listener of --metrics-listen with cs;
// nil without the flag. own is the process's own TLS config (a peer's),
// nil when it has none.
func serveMetrics(c *cli.Context, own *tls.Config, log *slog.Logger, cs ...prometheus.Collector) (*selfmetrics.Server, error) {
	f, err := metricsFiles(c, true)
	if err != nil {
		return nil, err
	}
	return f.Serve(own, log, cs...)
}
