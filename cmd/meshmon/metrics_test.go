package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/internal/selfmetrics"
)

// TestMetricsNeedTLSOrPlaintext: a metrics listener without a
// certificate is refused, before anything starts, unless plaintext is
// asked for; the error names the flags to give.
func TestMetricsNeedTLSOrPlaintext(t *testing.T) {
	for _, args := range [][]string{
		{"peer", "run", "--site", "s1", "--data-dir", t.TempDir(), "--insecure", "--metrics-listen", "127.0.0.1:0"},
		{"poller", "run", "--site", "s1", "--data-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:0"},
		{"sim", "--agents", "1", "--base-addr", "127.79.0.1", "--metrics-listen", "127.0.0.1:0"},
		{"sim", "--agents", "1", "--base-addr", "127.79.0.1", "--metrics-listen", "127.0.0.1:0", "--metrics-tls-cert", "c.pem"},
		{"sim", "--agents", "1", "--base-addr", "127.79.0.1", "--metrics-listen", "127.0.0.1:0", "--metrics-plaintext", "--metrics-tls-cert", "c.pem", "--metrics-tls-key", "k.pem"},
	} {
		err := newApp().Run(append([]string{"meshmon"}, args...))
		if err == nil || !strings.Contains(err.Error(), "--metrics-plaintext") && !strings.Contains(err.Error(), "give both") {
			t.Errorf("%s: %v, want a refusal naming the flags", strings.Join(args, " "), err)
		}
	}
}

// TestSimMetrics: 'meshmon sim --metrics-listen' serves its agents and
// the Go and process collectors, parsed with Prometheus' text parser.
func TestSimMetrics(t *testing.T) {
	port, err := freeport.Port("tcp")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- newApp().RunContext(ctx, []string{"meshmon", "--log-level", "warn", "sim", "--agents", "2", "--base-addr", "127.79.1.1",
			"--metrics-listen", "127.0.0.1:" + strconv.Itoa(port), "--metrics-plaintext"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sim: %v", err)
		}
	}()
	eventually.NoError(t, 20*time.Second, "the sim's metrics", func() error {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		fams, err := selfmetrics.Scrape(sctx, nil, url)
		if err != nil {
			return err
		}
		if v, ok := fams.Value("meshmon_sim_agents"); v != 2 {
			return errors.New("meshmon_sim_agents is not 2: " + strconv.FormatFloat(v, 'f', -1, 64) + " " + strconv.FormatBool(ok))
		}
		for _, name := range []string{"meshmon_sim_requests_answered_total", "go_goroutines", "process_resident_memory_bytes"} {
			if _, ok := fams.Value(name); !ok {
				return errors.New("no " + name)
			}
		}
		return nil
	})
}
