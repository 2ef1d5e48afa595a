//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// consoleWithin is how soon a fault must show on the console's live
// events page: 2 s (issue 20), or MESHMON_E2E_CONSOLE_WITHIN.
func consoleWithin(t *testing.T) time.Duration {
	if s := os.Getenv("MESHMON_E2E_CONSOLE_WITHIN"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("MESHMON_E2E_CONSOLE_WITHIN=%q: %v", s, err)
		}
		return d
	}
	return 2 * time.Second
}

// artifacts is where a test's screenshots go: $MESHMON_ARTIFACTS, or a
// temporary directory of the test's.
func artifacts(t *testing.T) string {
	dir := os.Getenv("MESHMON_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleMesh is an operator-mode central serving the console over TLS,
// tenant acme's site s1 with a poller polling simulated devices, and
// tenant beta with a site s2 of its own: real processes.
type consoleMesh struct {
	console  string // https://127.0.0.1:port
	caFile   string
	creds    map[string]string // acme-noc, acme-admin, beta-noc: .creds files
	agents   []*sim.Agent
	links    []sim.Link // the simulated LLDP topology
	control  string     // the simulator's fault control API
	beta     string     // a device name of beta's (never at acme's)
	dir      string
	centralP *proc
}

func startConsoleMesh(t *testing.T) *consoleMesh {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	mustRun(t, "init", "--keys", keys)
	caDir := filepath.Join(keys, "ca")
	m := &consoleMesh{caFile: filepath.Join(caDir, "ca.pem"), creds: map[string]string{}, dir: dir}
	tlsArgs := func(name string) []string {
		out := filepath.Join(dir, "certs", name)
		mustRun(t, "tls", "issue", "--ca-dir", caDir, "--name", name, "--host", "127.0.0.1", "--out-dir", out)
		return []string{"--tls-cert", filepath.Join(out, "cert.pem"), "--tls-key", filepath.Join(out, "key.pem"), "--tls-ca", filepath.Join(out, "ca.pem")}
	}
	cport, lport, wport, sport := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "tcp")
	curl, surl := "tls://127.0.0.1:"+strconv.Itoa(cport), "tls://127.0.0.1:"+strconv.Itoa(sport)
	m.centralP = runMeshmon(t, "central", append([]string{"peer", "run", "--role", "central", "--name", "c1", "--trust", filepath.Join(keys, "trust.json"),
		"--listen", "127.0.0.1:" + strconv.Itoa(cport), "--leaf-listen", "127.0.0.1:" + strconv.Itoa(lport), "--data-dir", filepath.Join(dir, "c1"),
		"--console-listen", "127.0.0.1:" + strconv.Itoa(wport)}, tlsArgs("c1")...)...)
	m.centralP.waitOutput(`console on https://127\.0\.0\.1:`+strconv.Itoa(wport), 30*time.Second)
	m.console = "https://127.0.0.1:" + strconv.Itoa(wport)
	cli := func(args ...string) string {
		return mustRun(t, append([]string{"--server", curl, "--tlsca", m.caFile}, args...)...)
	}
	creds := func(tenant string, args ...string) string {
		f := filepath.Join(dir, tenant+strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", tenant, "--keys", keys, "--out", f}, args...)...)
		return f
	}
	for _, ts := range [][2]string{{"acme", "s1"}, {"beta", "s2"}} {
		cli("tenant", "create", ts[0], "--keys", keys)
		cli("site", "add", ts[1], "--tenant", ts[0], "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", filepath.Join(dir, ts[1]+".token"))
		m.creds[ts[0]+"-noc"] = creds(ts[0], "--role", "noc")
	}
	m.creds["acme-admin"] = creds("acme", "--role", "admin")
	m.creds["ops"] = filepath.Join(dir, "ops.creds")
	cli("tenant", "creds", "--ops", "--keys", keys, "--out", m.creds["ops"])
	site := runMeshmon(t, "s1", append([]string{"peer", "run", "--role", "site", "--name", "s1-peer", "--join-file", filepath.Join(dir, "s1.token"),
		"--listen", "127.0.0.1:" + strconv.Itoa(sport), "--data-dir", filepath.Join(dir, "s1")}, tlsArgs("s1")...)...)
	site.waitOutput(`peer s1-peer ready`, peerReady)

	// Two simulated devices at s1, polled every second, linked in an
	// LLDP tree (with the uplink outside the site), and the simulator's
	// fault control API.
	scfg := sim.DefaultConfig()
	scfg.Agents, scfg.NamePrefix, scfg.BaseAddr, scfg.Topology = 2, "cons", mustAddr("127.81.0.1"), sim.TopologyTree
	sm, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	simCtx, stopSim := context.WithCancel(context.Background())
	t.Cleanup(stopSim)
	if err := sm.Start(simCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	m.agents, m.links = sm.Agents(), sm.Links()
	ctl := httptest.NewServer(sim.ControlHandler(sm))
	t.Cleanup(ctl.Close)
	m.control = ctl.URL
	for _, a := range m.agents {
		mustRun(t, "--server", surl, "--tlsca", m.caFile, "--creds", m.creds["acme-admin"], "device", "add", a.Name(), "--address", a.Addr().Addr().String(),
			"--checks", "snmp,icmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())), "--interval", "1s")
	}
	poller := runMeshmon(t, "poller", "--server", surl, "--tlsca", m.caFile, "--creds", creds("acme", "--role", "poller", "--site", "s1", "--user", "p1"),
		"poller", "run", "--name", "p1", "--data-dir", filepath.Join(dir, "p1"), "--down-after", "1", "--up-after", "1")
	poller.waitOutput(`poller started`, 30*time.Second)
	m.beta = "beta-router"
	return m
}

// fault asks the simulator's control API for a fault.
func (m *consoleMesh) fault(t *testing.T, path string) {
	t.Helper()
	resp, err := http.Post(m.control+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fault %s: %d %s", path, resp.StatusCode, b)
	}
}

// consoleClient logs in to the console with a .creds file, as a script
// would, verifying the console's certificate against the mesh's CA.
func (m *consoleMesh) consoleClient(t *testing.T, credsFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(t, m.caFile)) {
		t.Fatal("no CA")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	_, page := httpGet(t, c, m.console+"/login")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if tok == nil {
		t.Fatalf("no csrf token on the login page:\n%s", page)
	}
	var b strings.Builder
	w := multipart.NewWriter(&b)
	w.WriteField("csrf", tok[1])
	fw, _ := w.CreateFormFile("creds_file", filepath.Base(credsFile))
	fw.Write(mustRead(t, credsFile))
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, m.console+"/login", strings.NewReader(b.String()))
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with %s: %d", credsFile, resp.StatusCode)
	}
	return c
}

// sseEv is an event the console's stream sent: its data, its id, and
// whether it came before "live" (a replay's).
type sseEv struct {
	data     map[string]any
	id       string
	replayed bool
}

// streamEvent opens the console's event stream at path (resuming from
// lastID when set), runs act once it is live, and returns the first event
// it sends.
func (m *consoleMesh) streamEvent(t *testing.T, c *http.Client, path, lastID string, act func()) sseEv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.console+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	sc := *c
	sc.Timeout = 0
	resp, err := sc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d", path, resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	var event, id string
	isLive := false
	for lines.Scan() {
		l := lines.Text()
		switch {
		case strings.HasPrefix(l, "id: "):
			id = l[len("id: "):]
		case strings.HasPrefix(l, "event: "):
			event = l[len("event: "):]
		case strings.HasPrefix(l, "data: ") && event == "live":
			isLive = true
			act()
		case strings.HasPrefix(l, "data: ") && event == "ev":
			var ev map[string]any
			if err := json.Unmarshal([]byte(l[len("data: "):]), &ev); err != nil {
				t.Fatal(err)
			}
			return sseEv{data: ev, id: id, replayed: !isLive}
		}
	}
	t.Fatalf("%s ended without an event: %v", path, lines.Err())
	return sseEv{}
}

// cookieOnly is a client that holds nothing but c's session cookie.
func cookieOnly(t *testing.T, m *consoleMesh, c *http.Client) *http.Client {
	t.Helper()
	u, _ := url.Parse(m.console)
	jar, _ := cookiejar.New(nil)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "meshmon_session" {
			jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/"}})
		}
	}
	if len(jar.Cookies(u)) != 1 {
		t.Fatal("no session cookie to replay")
	}
	return &http.Client{Jar: jar, Timeout: c.Timeout, Transport: c.Transport, CheckRedirect: c.CheckRedirect}
}

func httpGet(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// browser starts headless Chromium (root needs --no-sandbox) and returns
// a context of a tab in it.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := need(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
		// The console serves the mesh's own CA's certificate, which the
		// browser's store does not hold; consoleClient verifies it.
		chromedp.Flag("ignore-certificate-errors", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shoot writes a screenshot of the page to dir/name.png.
func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	f := filepath.Join(dir, name+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", f)
}

// runIn runs browser actions with a deadline.
func runIn(t *testing.T, ctx context.Context, within time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs a browser action that reads a value, with a deadline.
func value[T any](t *testing.T, ctx context.Context, within time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestConsole drives the console in headless Chromium against a mesh of
// real processes: log in with a NOC's .creds, see the sites, see a
// simulated fault on the live events page within 2 s, filter, open the
// device and its charts, and find nothing of another tenant by URL.
func TestConsole(t *testing.T) {
	ctx := browser(t)
	m := startConsoleMesh(t)
	shots := artifacts(t)
	dev := m.agents[0].Name()

	// Central holds samples of the devices: the site's link is up.
	admin := m.consoleClient(t, m.creds["acme-admin"])
	eventually.True(t, 90*time.Second, "s1's devices at central", func() bool {
		status, body := httpGet(t, admin, m.console+"/sites/s1")
		return status == http.StatusOK && strings.Contains(body, `data-device="`+dev+`"`)
	})
	// The poller group is read from the site over its link, replies on
	// the site's task reply prefix: a tenant admin sees p1 lead it.
	eventually.True(t, 30*time.Second, "s1's poller group, p1 leading, on its page", func() bool {
		_, body := httpGet(t, admin, m.console+"/sites/s1")
		return strings.Contains(body, `<p id="group">Leader: <b>p1</b>`)
	})

	// Log in as acme's NOC, uploading the .creds file.
	runIn(t, ctx, 20*time.Second, "log in",
		chromedp.Navigate(m.console+"/login"),
		chromedp.SetUploadFiles(chromedp.CSS("#creds-file"), []string{m.creds["acme-noc"]}),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#sites tr.site[data-site="s1"]`)),
	)
	who := value(t, ctx, 5*time.Second, "who", chromedp.Text(chromedp.CSS("#who")))
	if !strings.Contains(who, "tenant acme") {
		t.Fatalf("logged in as %q", who)
	}
	shoot(t, ctx, shots, "1-sites")

	// The site page draws the simulated LLDP topology: every link, the
	// agents and the uplink outside the site. A link shows once either
	// end's samples are at central, an agent as known once its own are:
	// wait for both.
	eventually.True(t, 30*time.Second, "s1's links and agents on its page", func() bool {
		_, body := httpGet(t, admin, m.console+"/sites/s1")
		return strings.Count(body, `<line class="link`) == len(m.links) && strings.Count(body, `class="node unknown"`) == 1
	})
	runIn(t, ctx, 20*time.Second, "site page",
		chromedp.Navigate(m.console+"/sites/s1"),
		chromedp.WaitVisible(chromedp.CSS(`#topology line.link`)))
	drawn := value(t, ctx, 5*time.Second, "topology", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#topology line.link")).map(l => [l.dataset.a, l.dataset.b].sort().join(" -- "))`))
	var want []string
	for _, l := range m.links {
		ends := []string{l.A.Device, l.B.Device}
		slices.Sort(ends)
		want = append(want, strings.Join(ends, " -- "))
	}
	slices.Sort(drawn)
	slices.Sort(want)
	if !slices.Equal(drawn, want) {
		t.Fatalf("the site page draws the links %q, want the simulated %q", drawn, want)
	}
	unknown := value(t, ctx, 5*time.Second, "uplink", chromedp.Evaluate[int](`document.querySelectorAll('#topology .node.unknown').length`))
	if unknown != 1 {
		t.Fatalf("%d unknown nodes drawn, want the uplink only", unknown)
	}
	shoot(t, ctx, shots, "1b-site-topology")

	// The live events page, filtered to s1; an interface of the device
	// goes down.
	runIn(t, ctx, 20*time.Second, "events page",
		chromedp.Navigate(m.console+"/events?site=s1"),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="stream-state"][starts-with(., "live")]`)),
	)
	injected := time.Now()
	m.fault(t, "/agents/"+dev+"/if/1/down")
	within := consoleWithin(t)
	runIn(t, ctx, within, fmt.Sprintf("the if_down of %s on the live page within %s", dev, within),
		chromedp.WaitVisible(chromedp.CSS(`tr.event[data-device="`+dev+`"][data-kind="if_down"]`)))
	t.Logf("the fault showed on the live events page %s after it was injected", time.Since(injected).Round(time.Millisecond))
	shoot(t, ctx, shots, "2-events-live")

	// Filter by kind with the form: only if_up events show, the next one
	// among them.
	runIn(t, ctx, 20*time.Second, "filter",
		chromedp.SetValue(chromedp.CSS("#f-kind"), "if_up"),
		chromedp.Click(chromedp.CSS("#f-apply")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="stream-state"][starts-with(., "live")]`)),
	)
	m.fault(t, "/agents/"+dev+"/if/1/up")
	runIn(t, ctx, 10*time.Second, "the if_up on the filtered page",
		chromedp.WaitVisible(chromedp.CSS(`tr.event[data-device="`+dev+`"][data-kind="if_up"]`)))
	kinds := value(t, ctx, 5*time.Second, "kinds", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr.event")).map(r => r.dataset.kind)`))
	for _, k := range kinds {
		if k != "if_up" {
			t.Fatalf("the page filtered on kind if_up shows %v", kinds)
		}
	}
	shoot(t, ctx, shots, "3-events-filtered")

	// Open the device from its event: its checks and charts.
	runIn(t, ctx, 30*time.Second, "device page",
		chromedp.Click(chromedp.CSS(`tr.event[data-device="`+dev+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#charts svg")))
	charts := value(t, ctx, 5*time.Second, "charts", chromedp.Evaluate[int](`document.querySelectorAll("#charts svg").length`))
	lines := value(t, ctx, 5*time.Second, "lines", chromedp.Evaluate[int](`document.querySelectorAll("#charts svg polyline").length`))
	if charts < 3 || lines < 3 {
		// ICMP rtt, uptime, and at least one interface's in and out.
		t.Fatalf("device page has %d charts with %d lines", charts, lines)
	}
	checks := value(t, ctx, 5*time.Second, "checks", chromedp.Text(chromedp.CSS("#checks")))
	if !strings.Contains(checks, "if.1") {
		t.Fatalf("device page checks:\n%s", checks)
	}
	shoot(t, ctx, shots, "4-device")

	// The history view: a replay from 15 minutes ago holds the fault and
	// its recovery, then goes live.
	runIn(t, ctx, 20*time.Second, "replay",
		chromedp.Navigate(m.console+"/events?device="+dev+"&since=15m"),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="stream-state"][starts-with(., "live")]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr.event[data-device="`+dev+`"][data-kind="if_down"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr.event[data-device="`+dev+`"][data-kind="if_up"]`)))
	shoot(t, ctx, shots, "5-events-replay")

	// Another tenant's site and device, by URL: the page and the status
	// say not found, as for a site that does not exist.
	resp := value(t, ctx, 15*time.Second, "beta's site by URL", chromedp.NavigateResponse(m.console+"/sites/s2"))
	errText := value(t, ctx, 5*time.Second, "the error", chromedp.Text(chromedp.CSS("#error")))
	if resp.Status != http.StatusNotFound || !strings.Contains(errText, "site s2: not found") {
		t.Fatalf("acme's NOC at /sites/s2: %d %q", resp.Status, errText)
	}
	shoot(t, ctx, shots, "6-other-tenant")
	noc := m.consoleClient(t, m.creds["acme-noc"])
	beta := m.consoleClient(t, m.creds["beta-noc"])
	for _, u := range []string{"/sites/s2", "/sites/s2/devices/" + m.beta, "/events/stream?tenant=beta"} {
		status, body := httpGet(t, noc, m.console+u)
		if status != http.StatusNotFound || !strings.Contains(body, "not") || strings.Contains(body, "data-site=") || strings.Contains(body, "data-device=") {
			t.Fatalf("acme's NOC at %s: %d\n%s", u, status, body)
		}
	}
	// beta's NOC sees its own site, and nothing of acme's.
	if status, body := httpGet(t, beta, m.console+"/"); status != http.StatusOK || !strings.Contains(body, `data-site="s2"`) || strings.Contains(body, `data-site="s1"`) {
		t.Fatalf("beta's NOC sites page: %d\n%s", status, body)
	}
	for _, u := range []string{"/sites/s1", "/sites/s1/devices/" + dev} {
		if status, _ := httpGet(t, beta, m.console+u); status != http.StatusNotFound {
			t.Fatalf("beta's NOC at %s: %d", u, status)
		}
	}
	// beta's session cookie, replayed by a client that holds only it,
	// reaches beta's pages and none of acme's: the session is the
	// credential's, whatever the URL names.
	replayed := cookieOnly(t, m, beta)
	if status, body := httpGet(t, replayed, m.console+"/"); status != http.StatusOK || !strings.Contains(body, `data-site="s2"`) || strings.Contains(body, `data-site="s1"`) {
		t.Fatalf("beta's replayed cookie at /: %d\n%s", status, body)
	}
	for _, u := range []string{"/sites/s1", "/sites/s1/devices/" + dev, "/events/stream?tenant=acme"} {
		if status, _ := httpGet(t, replayed, m.console+u); status != http.StatusNotFound {
			t.Fatalf("beta's replayed cookie at %s: %d", u, status)
		}
	}

	// The ops account's credential: every tenant's live events, filtered
	// to one; no tenant's sites.
	ops := m.consoleClient(t, m.creds["ops"])
	if status, body := httpGet(t, ops, m.console+"/"); status != http.StatusOK || !strings.Contains(body, "ops credential reads every tenant") {
		t.Fatalf("ops sites page: %d\n%s", status, body)
	}
	if status, _ := httpGet(t, ops, m.console+"/sites/s1"); status != http.StatusNotFound {
		t.Fatalf("ops at /sites/s1: %d", status)
	}
	// The history view too: a replay of every tenant's stream, through
	// central's own connection in each tenant's account (the ops account
	// reads no tenant's stream).
	old := m.streamEvent(t, ops, "/events/stream?kind=if_down&since=15m", "", func() {})
	if !old.replayed || old.data["tenant"] != "acme" || old.data["device"] != dev || !strings.HasPrefix(old.id, "acme:") {
		t.Fatalf("ops replay: first event %+v, want acme's if_down of %s, replayed, with acme's sequence as its id", old, dev)
	}
	ev := m.streamEvent(t, ops, "/events/stream?tenant=acme&kind=if_down", "", func() { m.fault(t, "/agents/"+m.agents[1].Name()+"/if/2/down") })
	if ev.data["tenant"] != "acme" || ev.data["device"] != m.agents[1].Name() {
		t.Fatalf("ops live event %v", ev)
	}
	// A reconnect from the replay's first event (the same URL, as
	// EventSource does) resumes after it: the next is the one that came
	// live since, sent before going live.
	next := m.streamEvent(t, ops, "/events/stream?kind=if_down&since=15m", old.id, func() {})
	if !next.replayed || next.data["device"] != m.agents[1].Name() {
		t.Fatalf("ops resumed from %s: first %+v, want %s's if_down, replayed", old.id, next, m.agents[1].Name())
	}
	// The ops replays remove their consumers: central logs no refused
	// removal.
	if out := m.centralP.out.String(); strings.Contains(out, "CONSUMER.DELETE") {
		t.Errorf("central logged a refused consumer removal of an ops replay:\n%s", tail(out, 20))
	}

	// Logging out ends the session.
	runIn(t, ctx, 15*time.Second, "log out",
		chromedp.Navigate(m.console+"/"),
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#login")))
}

// TestConsoleFlags: a site peer refuses --console-listen, and a central
// login limits that would not limit, each in one line.
func TestConsoleFlags(t *testing.T) {
	_, stderr, code := run(t, "peer", "run", "--role", "site", "--site", "s1", "--listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--console-listen", "127.0.0.1:0")
	checkOneLineError(t, "", stderr, code, "--console-listen: only a central peer (--role central) serves the console")
	// Login limits that would not limit.
	for flag, want := range map[string]string{
		"--console-login-failures=0":  "--console-login-failures: 0: must be at least 1",
		"--console-login-window=0s":   "--console-login-window: 0s: must be positive",
		"--console-login-lockout=-1m": "--console-login-lockout: -1m0s: must be positive",
	} {
		_, stderr, code := run(t, "peer", "run", "--role", "central", "--name", "c1", "--listen", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--console-listen", "127.0.0.1:0", flag)
		checkOneLineError(t, "", stderr, code, want)
	}
	// A central that authenticates no client: its server would take any
	// .creds, a forged one included (a review logged in so as "mallory").
	_, stderr, code = run(t, "peer", "run", "--role", "central", "--name", "c1", "--listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--console-listen", "127.0.0.1:0")
	checkOneLineError(t, "", stderr, code, "--console-listen: this central authenticates no client (no --trust, --auth-user or --auth-nkey)")
}
