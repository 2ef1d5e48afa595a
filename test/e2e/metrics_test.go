//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
)

// TestPrometheusScrapesMesh: a small mesh of real processes (a central
// peer, a site peer joined to it, a poller and a simulator, every one with
// --metrics-listen over HTTPS with a certificate of the mesh's CA, central
// behind a scrape password) is scraped by Debian's prometheus, run against
// a generated configuration like deploy/prometheus/prometheus.yml: every
// target must come up, the series docs/metrics.md promises must reach
// Prometheus, and every query of the Grafana dashboard
// (deploy/grafana/meshmon.json) must be valid PromQL on those series.
func TestPrometheusScrapesMesh(t *testing.T) {
	prom := need(t, "prometheus")
	promtool := need(t, "promtool")
	if out, err := execOut(promtool, "check", "config", "../../deploy/prometheus/prometheus.yml"); err != nil {
		t.Fatalf("promtool check config deploy/prometheus/prometheus.yml: %v\n%s", err, out)
	}
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	mustRun(t, "tls", "ca", "--dir", caDir)
	caFile := filepath.Join(caDir, "ca.pem")
	cert := func(name string) (certFile, keyFile string) {
		out := filepath.Join(dir, "certs", name)
		mustRun(t, "tls", "issue", "--ca-dir", caDir, "--name", name, "--host", "127.0.0.1,localhost", "--out-dir", out)
		return filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem")
	}
	pwFile := filepath.Join(dir, "password")
	scrapePW := filepath.Join(dir, "scrape-password")
	for f, pw := range map[string]string{pwFile: meshPassword, scrapePW: "e2e-scrape-secret"} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metricsPort := map[string]int{}
	metricsArgs := func(name string) []string {
		metricsPort[name] = freePort(t, "tcp")
		return []string{"--metrics-listen", "127.0.0.1:" + strconv.Itoa(metricsPort[name])}
	}

	// Central, with a scrape password.
	cc, ck := cert("central")
	cport, leaf := freePort(t, "tcp"), freePort(t, "tcp")
	central := runMeshmon(t, "central", append([]string{"--log-level", "warn", "peer", "run", "--role", "central", "--name", "central",
		"--listen", "127.0.0.1:" + strconv.Itoa(cport), "--data-dir", filepath.Join(dir, "central"),
		"--leaf-listen", "127.0.0.1:" + strconv.Itoa(leaf), "--leaf-password", meshLeafPassword,
		"--auth-user", meshUser, "--auth-password-file", pwFile, "--tls-cert", cc, "--tls-key", ck, "--tls-ca", caFile,
		"--metrics-password-file", scrapePW}, metricsArgs("central")...)...)
	central.waitOutput(`peer \S+ ready on`, peerReady)
	creds := func(port int, args ...string) []string {
		return append([]string{"--server", "tls://127.0.0.1:" + strconv.Itoa(port), "--tlsca", caFile, "--user", meshUser, "--password-file", pwFile, "--timeout", "20s"}, args...)
	}
	token := filepath.Join(dir, "s1.token")
	mustRun(t, creds(cport, "site", "add", "s1", "--wait-central", "1", "--token-file", token)...)

	// The site, its simulator and its poller.
	sc, sk := cert("s1")
	sport := freePort(t, "tcp")
	site := runMeshmon(t, "site", append([]string{"--log-level", "warn", "peer", "run", "--join-file", token, "--name", "s1",
		"--listen", "127.0.0.1:" + strconv.Itoa(sport), "--data-dir", filepath.Join(dir, "s1"),
		"--auth-user", meshUser, "--auth-password-file", pwFile, "--tls-cert", sc, "--tls-key", sk, "--tls-ca", caFile}, metricsArgs("site")...)...)
	site.waitOutput(`peer \S+ ready on`, peerReady)
	trap := freePort(t, "udp")
	simc, simk := cert("sim")
	runMeshmon(t, "sim", append(creds(sport, "sim", "--agents", "3", "--base-addr", "127.77.0.1", "--name-prefix", "m",
		"--add-devices", "--interval", "1s", "--trap-target", "127.0.0.1:"+strconv.Itoa(trap), "--faults-every", "1s",
		"--metrics-tls-cert", simc, "--metrics-tls-key", simk), metricsArgs("sim")...)...)
	pc, pk := cert("poller")
	poller := runMeshmon(t, "poller", append(creds(sport, "poller", "run", "--site", "s1", "--name", "p1", "--data-dir", filepath.Join(dir, "poller"),
		"--trap-listen", "127.0.0.1:"+strconv.Itoa(trap), "--metrics-tls-cert", pc, "--metrics-tls-key", pk), metricsArgs("poller")...)...)
	poller.waitOutput(`poller started`, 30*time.Second)

	// Prometheus, scraping each every second.
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n")
	for _, name := range []string{"central", "site", "poller", "sim"} {
		fmt.Fprintf(&cfg, "  - job_name: meshmon-%s\n    scheme: https\n    tls_config: {ca_file: %q}\n", name, caFile)
		if name == "central" {
			fmt.Fprintf(&cfg, "    basic_auth: {username: prometheus, password_file: %q}\n", scrapePW)
		}
		fmt.Fprintf(&cfg, "    static_configs: [{targets: [\"127.0.0.1:%d\"]}]\n", metricsPort[name])
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promPort := freePort(t, "tcp")
	start(t, "prometheus", prom, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(promPort), "--log.level=warn")
	api := "http://127.0.0.1:" + strconv.Itoa(promPort) + "/api/v1/"

	eventually.NoError(t, 30*time.Second, "every target up in Prometheus", func() error {
		var targets struct {
			ActiveTargets []struct {
				ScrapePool string `json:"scrapePool"`
				Health     string `json:"health"`
				LastError  string `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := promGet(api+"targets?state=active", &targets); err != nil {
			return err
		}
		if len(targets.ActiveTargets) != 4 {
			return fmt.Errorf("%d active targets, want 4", len(targets.ActiveTargets))
		}
		for _, tg := range targets.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("%s is %s: %s", tg.ScrapePool, tg.Health, tg.LastError)
			}
		}
		return nil
	})

	// What the mesh did reached Prometheus: polls, stored events, the
	// site's link at central, the delays.
	for _, q := range []string{
		`meshmon_poller_polls_total{job="meshmon-poller"} > 0`,
		`meshmon_poller_devices{job="meshmon-poller"} == 3`,
		`meshmon_poller_group_leader{job="meshmon-poller"} == 1`,
		`meshmon_poller_poll_duration_seconds_count > 0`,
		`meshmon_poller_traps_received_total > 0`,
		`meshmon_peer_site_link_up{job="meshmon-central", site="s1"} == 1`,
		`meshmon_peer_central_link_up{job="meshmon-site"} == 1`,
		`meshmon_peer_stream_messages{job="meshmon-site", stream="METRICS"} > 0`,
		`meshmon_peer_stream_messages{job="meshmon-central", stream="METRICS"} > 0`,
		`meshmon_peer_source_lag_messages{job="meshmon-central", site="s1"}`,
		`meshmon_peer_event_store_delay_seconds_count{job="meshmon-site"} > 0`,
		`meshmon_sim_agents == 3`,
		`up{job="meshmon-central"} == 1`,
	} {
		eventually.NoError(t, 20*time.Second, q, func() error {
			n, err := promQuery(api, q)
			if err == nil && n == 0 {
				err = fmt.Errorf("no series")
			}
			return err
		})
	}

	// Every query of the Grafana dashboard is valid PromQL over these
	// series, and names only series the processes serve.
	exprs := dashboardExprs(t, "../../deploy/grafana/meshmon.json")
	served := map[string]bool{}
	var names struct{ Data []string }
	if err := promGetRaw(api+"label/__name__/values", &names); err != nil {
		t.Fatal(err)
	}
	for _, n := range names.Data {
		served[n] = true
	}
	name := regexp.MustCompile(`\b(meshmon_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)
	for _, e := range exprs {
		q := strings.ReplaceAll(e, "$__rate_interval", "5m")
		if _, err := promQuery(api, q); err != nil {
			t.Errorf("dashboard query %s: %v", e, err)
		}
		for _, n := range name.FindAllString(e, -1) {
			if !served[n] {
				t.Errorf("dashboard query %s names %s, which no process serves", e, n)
			}
		}
	}
}

// dashboardExprs are the queries of a Grafana dashboard's panels.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" && !slices.Contains(out, tg.Expr) {
				out = append(out, tg.Expr)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("%s has %d queries; want the dashboard's", path, len(out))
	}
	return out
}

// promQuery runs an instant query and returns how many series it gave.
func promQuery(api, q string) (int, error) {
	var res struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := promGet(api+"query?query="+url.QueryEscape(q), &res); err != nil {
		return 0, err
	}
	return len(res.Result), nil
}

// promGet GETs a Prometheus API URL and decodes its data into v.
func promGet(u string, v any) error {
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := promGetRaw(u, &env); err != nil {
		return err
	}
	if env.Status != "success" {
		return fmt.Errorf("prometheus: %s", env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

func promGetRaw(u string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %s: %w", u, resp.Status, err)
	}
	return nil
}
