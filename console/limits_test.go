package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/console"
)

// loginFrom posts a user and password to the login form as a client at
// addr would (the double-submit token in the cookie and the form).
func (f *fixture) loginFrom(addr, user, password string) *httptest.ResponseRecorder {
	form := url.Values{"csrf": {"tok"}, "user": {user}, "password": {password}}
	req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "meshmon_login", Value: "tok"})
	req.RemoteAddr = addr
	rec := httptest.NewRecorder()
	f.con.Handler().ServeHTTP(rec, req)
	return rec
}

// TestLoginLimits: logins central refuses, from one address or for one
// user, are refused for a while once there are too many, with a clear
// message and Retry-After, even with the right password; they end with
// the lockout.
func TestLoginLimits(t *testing.T) {
	f := newFixture(t, false)
	const a, b, c = "192.0.2.1:5000", "192.0.2.2:5000", "192.0.2.3:5000"
	for i := range console.DefaultLoginFailures {
		if rec := f.loginFrom(a, testUser, "wrong-password-"+string(rune('a'+i))); rec.Code != http.StatusUnauthorized {
			t.Fatalf("refused login %d: %d\n%s", i+1, rec.Code, rec.Body)
		}
	}
	// The address is locked out, the right password with it.
	rec := f.loginFrom(a, testUser, testPassword)
	want := "too many refused logins for address 192.0.2.1 (5 within 10m0s): logins refused for 5m0s more"
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), want) || rec.Header().Get("Retry-After") != "300" {
		t.Fatalf("after %d refused logins: %d Retry-After %q, want 429 with %q:\n%s", console.DefaultLoginFailures, rec.Code, rec.Header().Get("Retry-After"), want, rec.Body)
	}
	// So is the user, from another address.
	if rec := f.loginFrom(b, testUser, testPassword); rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "for user "+testUser) {
		t.Fatalf("the locked user from another address: %d\n%s", rec.Code, rec.Body)
	}
	// Another user from another address is not.
	if rec := f.loginFrom(c, "someone-else", "wrong-password"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("another user from another address: %d\n%s", rec.Code, rec.Body)
	}
	// The lockout ends.
	f.clock.add(console.DefaultLoginLockout - time.Second)
	if rec := f.loginFrom(a, testUser, testPassword); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("a second before the lockout ends: %d %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	f.clock.add(time.Second)
	if rec := f.loginFrom(a, testUser, testPassword); rec.Code != http.StatusSeeOther {
		t.Fatalf("after the lockout: %d\n%s", rec.Code, rec.Body)
	}
	// Refusals spread wider than the window do not add up.
	for range console.DefaultLoginFailures + 1 {
		if rec := f.loginFrom(b, "spread", "wrong-password"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("a refusal spread over time: %d\n%s", rec.Code, rec.Body)
		}
		f.clock.add(console.DefaultLoginWindow/(console.DefaultLoginFailures-1) + time.Second)
	}
}

// TestForgedCookies: a session cookie altered, made up, of another
// console, of an ended session or of an expired one reaches nothing.
func TestForgedCookies(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	f.login(t, c)
	u, _ := url.Parse(f.srv.URL)
	var id string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "meshmon_session" {
			id = ck.Value
		}
	}
	if id == "" {
		t.Fatal("no session cookie after login")
	}
	other := newFixture(t, false)
	oc := other.client(t)
	other.login(t, oc)
	otherURL, _ := url.Parse(other.srv.URL)
	var otherID string
	for _, ck := range oc.Jar.Cookies(otherURL) {
		if ck.Name == "meshmon_session" {
			otherID = ck.Value
		}
	}
	flip := []byte(id)
	flip[len(flip)/2] ^= 1
	// refused checks that a browser holding only the cookie value reaches
	// no page and no stream.
	refused := func(what, value string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
		req.AddCookie(&http.Cookie{Name: "meshmon_session", Value: value})
		resp, err := f.srv.Client().Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("%s: / answers %d %s, want a redirect to the login page", what, resp.StatusCode, resp.Header.Get("Location"))
		}
		req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/events/stream", nil)
		req.AddCookie(&http.Cookie{Name: "meshmon_session", Value: value})
		if resp, err = f.srv.Client().Transport.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: the event stream answers %d, want 401", what, resp.StatusCode)
		}
	}
	for _, tc := range []struct{ what, value string }{
		{"one bit altered", string(flip)},
		{"cut short", id[:len(id)-1]},
		{"made longer", id + "A"},
		{"made up", strings.Repeat("A", len(id))},
		{"another console's session", otherID},
		{"huge", strings.Repeat("x", 8<<10)},
	} {
		refused(tc.what, tc.value)
	}
	// The real one still works; once it has idled out it does not, and
	// stays ended when the clock would allow it again.
	if status, _ := get(t, c, f.srv.URL+"/alarms"); status != http.StatusOK {
		t.Fatalf("the session's own cookie: %d", status)
	}
	f.clock.add(console.DefaultSessionIdle + time.Second)
	refused("an expired session", id)
	f.clock.add(-console.DefaultSessionIdle)
	refused("an expired session, the clock set back", id)
	// An ended session (logout) stays ended.
	f.login(t, c)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "meshmon_session" {
			id = ck.Value
		}
	}
	tok := csrf(t, c, f.srv.URL+"/")
	if resp, err := c.PostForm(f.srv.URL+"/logout", url.Values{"csrf": {tok}}); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %v", err)
	}
	refused("a logged-out session", id)
}

// TestNilServer: a peer without a console holds a nil *Server, which has
// no URL and closes.
func TestNilServer(t *testing.T) {
	var s *console.Server
	s.Close()
	if u := s.URL(); u != "" {
		t.Errorf("URL of no console: %q", u)
	}
}
