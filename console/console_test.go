package console_test

import (
	"context"
	"crypto/tls"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/console"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/peer"
)

const (
	testUser     = "noc"
	testPassword = "correct-horse-battery"
)

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a central peer with its own user (a real embedded
// nats-server with JetStream) and a console over it, served by httptest.
type fixture struct {
	peer  *peer.Peer
	con   *console.Server
	srv   *httptest.Server
	clock *clock
}

func newFixture(t *testing.T, tlsOn bool) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc := peer.DefaultConfig()
	pc.Insecure = true
	pc.Role, pc.Name, pc.Listen, pc.DataDir = peer.RoleCentral, "central", "127.0.0.1:0", filepath.Join(t.TempDir(), "central")
	pc.Auth = peer.Auth{User: testUser, Password: testPassword}
	pc.LeafPassword = "leaf-password-long-enough"
	// No alarm processor: the alarms bucket is the tests' to make (or
	// not), not a race with the tenant's workers.
	pc.NoTenantWorkers = true
	p, err := meshtest.Start(ctx, pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	select {
	case <-p.StreamsReady():
	case <-ctx.Done():
		t.Fatal("central's streams never became ready")
	}
	clk := &clock{t: time.Now()}
	cfg := console.DefaultConfig()
	cfg.Listen, cfg.Insecure, cfg.Dial, cfg.PasswordLogin, cfg.Now = "127.0.0.1:0", true, p.DialAs, true, clk.now
	if tlsOn {
		cfg.TLS = &tls.Config{}
	}
	con, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	srv := httptest.NewUnstartedServer(con.Handler())
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &fixture{peer: p, con: con, srv: srv, clock: clk}
}

// client is a browser: a cookie jar, no redirects followed.
func (f *fixture) client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := f.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the status and body.
func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// csrf reads the CSRF token of the page at path.
func csrf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	_, body := get(t, c, u)
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf token in %s:\n%s", u, body)
	}
	return m[1]
}

// postForm posts a multipart form (as the login page does) with an
// optional file.
func postForm(t *testing.T, c *http.Client, u string, fields map[string]string, file []byte) (*http.Response, string) {
	t.Helper()
	var b strings.Builder
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	if file != nil {
		fw, _ := w.CreateFormFile("creds_file", "user.creds")
		fw.Write(file)
	}
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(b.String()))
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (f *fixture) login(t *testing.T, c *http.Client) {
	t.Helper()
	tok := csrf(t, c, f.srv.URL+"/login")
	resp, body := postForm(t, c, f.srv.URL+"/login", map[string]string{"csrf": tok, "user": testUser, "password": testPassword}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// userCreds is a .creds file of a user JWT with tags, signed by a fresh
// account key (central never saw it).
func userCreds(t *testing.T, tags ...string) []byte {
	t.Helper()
	akp, _ := nkeys.CreateAccount()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "u1"
	uc.Tags.Add(tags...)
	tok, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	b, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	for _, tc := range []struct {
		name   string
		fields map[string]string
		file   []byte
		status int
		want   string
	}{
		{"wrong password", map[string]string{"user": testUser, "password": "wrong-password-here"}, nil, http.StatusUnauthorized, "central refused the credential: connect: nats: Authorization Violation"},
		{"user without password", map[string]string{"user": testUser}, nil, http.StatusBadRequest, "user and password: give both"},
		{"nothing", map[string]string{}, nil, http.StatusBadRequest, "user and password: give both"},
		{"not a creds file", map[string]string{"creds": "hello"}, nil, http.StatusBadRequest, "creds: not a .creds file"},
		{"both creds and password", map[string]string{"creds": "x", "user": "a", "password": "b"}, nil, http.StatusBadRequest, "alternatives"},
		{"upload and paste", map[string]string{"creds": "x"}, []byte("y"), http.StatusBadRequest, "not both"},
		{"too large", nil, []byte(strings.Repeat("x", 17<<10)), http.StatusBadRequest, "larger than"},
		{"a poller's credential", nil, userCreds(t, "meshmon-tenant:acme", "meshmon-role:poller"), http.StatusForbidden, "does not log in to the console"},
		{"an unknown account's NOC", nil, userCreds(t, "meshmon-tenant:acme", "meshmon-role:noc"), http.StatusUnauthorized, "central refused the credential: connect: nats: Authorization Violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]string{"csrf": csrf(t, c, f.srv.URL+"/login")}
			for k, v := range tc.fields {
				fields[k] = v
			}
			resp, body := postForm(t, c, f.srv.URL+"/login", fields, tc.file)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("status %d, want %d with %q:\n%s", resp.StatusCode, tc.status, tc.want, body)
			}
			if status, _ := get(t, c, f.srv.URL+"/"); status != http.StatusSeeOther {
				t.Fatalf("after a refused login / answers %d, want a redirect to the login page", status)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	// A login without the form's token, or with another's, is refused.
	get(t, c, f.srv.URL+"/login")
	for _, tok := range []string{"", "forged"} {
		resp, body := postForm(t, c, f.srv.URL+"/login", map[string]string{"csrf": tok, "user": testUser, "password": testPassword}, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "csrf") {
			t.Fatalf("login with token %q: %d\n%s", tok, resp.StatusCode, body)
		}
	}
	// A login posted from another site's page is refused.
	tok := csrf(t, c, f.srv.URL+"/login")
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/login", strings.NewReader(url.Values{"csrf": {tok}, "user": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a login from another origin: %v %v", resp.StatusCode, err)
	}

	f.login(t, c)
	if status, body := get(t, c, f.srv.URL+"/"); status != http.StatusOK || !strings.Contains(body, "No sites") {
		t.Fatalf("sites page after login: %d\n%s", status, body)
	}
	// Logging in again replaces the session.
	u, _ := url.Parse(f.srv.URL)
	first := c.Jar.Cookies(u)
	f.login(t, c)
	old := &http.Client{Jar: must(cookiejar.New(nil)), CheckRedirect: c.CheckRedirect}
	old.Jar.SetCookies(u, first)
	if status, _ := get(t, old, f.srv.URL+"/"); status != http.StatusSeeOther {
		t.Fatalf("the session a second login replaced still answers: %d", status)
	}
	// Logout without the session's token is refused and the session stays.
	resp, err := c.PostForm(f.srv.URL+"/logout", url.Values{"csrf": {"forged"}})
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout with a forged token: %v %v", resp.StatusCode, err)
	}
	if status, _ := get(t, c, f.srv.URL+"/"); status != http.StatusOK {
		t.Fatalf("the session ended on a forged logout: %d", status)
	}
	tok = csrf(t, c, f.srv.URL+"/")
	resp, err = c.PostForm(f.srv.URL+"/logout", url.Values{"csrf": {tok}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %v %v", resp.StatusCode, err)
	}
	if status, _ := get(t, c, f.srv.URL+"/"); status != http.StatusSeeOther {
		t.Fatalf("after logout / answers %d, want a redirect to the login page", status)
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	if status, _ := get(t, c, f.srv.URL+"/alarms"); status != http.StatusOK {
		t.Fatalf("alarms: %d", status)
	}
	// Used within the idle time, it lives on...
	f.clock.add(console.DefaultSessionIdle - time.Minute)
	if status, _ := get(t, c, f.srv.URL+"/alarms"); status != http.StatusOK {
		t.Fatalf("a session used within its idle time: %d", status)
	}
	// ...idle longer, it ends, and so does its stream.
	f.clock.add(console.DefaultSessionIdle + time.Second)
	if status, _ := get(t, c, f.srv.URL+"/alarms"); status != http.StatusSeeOther {
		t.Fatalf("an idle session: %d, want a redirect to the login page", status)
	}
	if status, _ := get(t, c, f.srv.URL+"/events/stream"); status != http.StatusUnauthorized {
		t.Fatalf("the event stream of an expired session: %d, want 401", status)
	}
	// However busy, a session ends SessionMax after login.
	f.login(t, c)
	for range console.DefaultSessionMax / (console.DefaultSessionIdle / 2) {
		f.clock.add(console.DefaultSessionIdle / 2)
		get(t, c, f.srv.URL+"/alarms")
	}
	f.clock.add(time.Minute)
	if status, _ := get(t, c, f.srv.URL+"/alarms"); status != http.StatusSeeOther {
		t.Fatalf("a session past its maximum age: %d", status)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/sites/a.b", 400, "site"},
		{"/sites/" + url.PathEscape("A B"), 400, "site"},
		{"/sites/s1/devices/" + url.PathEscape("*"), 400, "device"},
		{"/sites/nosuch", 404, "site nosuch: not found"},
		{"/events?kind=bogus", 400, "kind &#34;bogus&#34; is not one of"},
		{"/events?severity=loud", 400, "severity"},
		{"/events?since=yesterday", 400, "since"},
		{"/events?since=2999-01-01T00:00", 400, "in the future"},
		{"/events?site=a.b", 400, "site"},
		{"/events/stream?device=" + url.QueryEscape("d>"), 400, "device"},
		{"/nosuch", 404, ""},
	} {
		status, body := get(t, c, f.srv.URL+tc.path)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.path, status, tc.status, tc.want, body)
		}
	}
	// A good filter renders.
	if status, body := get(t, c, f.srv.URL+"/events?kind=node_down&since=15m"); status != 200 || !strings.Contains(body, `value="15m"`) {
		t.Fatalf("events page: %d\n%s", status, body)
	}
	// No alarms bucket: the page says so.
	if _, body := get(t, c, f.srv.URL+"/alarms"); !strings.Contains(body, "No alarm data") {
		t.Fatalf("alarms page without a bucket:\n%s", body)
	}
}

func TestCookiesAndHeaders(t *testing.T) {
	f := newFixture(t, true)
	c := f.client(t)
	resp, err := c.Get(f.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	f.login(t, c)
	u, _ := url.Parse(f.srv.URL)
	var found bool
	for _, ck := range c.Jar.Cookies(u) {
		found = found || ck.Name == "meshmon_session"
	}
	if !found {
		t.Fatal("no session cookie after login")
	}
	// The cookie jar hides the attributes: log in again and read them.
	tok := csrf(t, c, f.srv.URL+"/login")
	resp, _ = postForm(t, c, f.srv.URL+"/login", map[string]string{"csrf": tok, "user": testUser, "password": testPassword}, nil)
	set := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"meshmon_session=", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(set, want) {
			t.Fatalf("Set-Cookie lacks %s:\n%s", want, set)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*console.Config)
		want string
	}{
		{"no listen", func(c *console.Config) { c.Listen = "" }, "listen is empty"},
		{"plaintext without insecure", func(c *console.Config) { c.Insecure = false }, "no TLS certificate"},
		{"bad listen", func(c *console.Config) { c.Listen = "nohost" }, "not host:port"},
		{"no dial", func(c *console.Config) { c.Dial = nil }, "dial is not set"},
		{"max below idle", func(c *console.Config) { c.SessionMax = time.Minute }, "session max"},
		{"no login failures", func(c *console.Config) { c.LoginFailures = 0 }, "login failures 0 must be at least 1"},
		{"no login window", func(c *console.Config) { c.LoginWindow = 0 }, "login window"},
		{"no lockout", func(c *console.Config) { c.LoginLockout = -time.Second }, "login lockout"},
	} {
		cfg := console.DefaultConfig()
		cfg.Listen, cfg.Insecure = "127.0.0.1:0", true
		cfg.Dial = (&peer.Peer{}).DialAs
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestStartListensOnLoopbackByDefault(t *testing.T) {
	f := newFixture(t, false)
	cfg := console.DefaultConfig()
	cfg.Listen, cfg.Insecure, cfg.Dial = ":0", true, f.peer.DialAs
	con, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.Start(); err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	if !strings.HasPrefix(con.Addr(), "127.0.0.1:") || !strings.HasPrefix(con.URL(), "http://127.0.0.1:") {
		t.Fatalf("console on %s (%s), want 127.0.0.1", con.Addr(), con.URL())
	}
	resp, err := http.Get(con.URL() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: %d", resp.StatusCode)
	}
	con.Close()
	con.Close() // idempotent
}
