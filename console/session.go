package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// Cookie names.
const (
	sessionCookie = "meshmon_session"
	// loginCookie carries the login form's CSRF token (double submit):
	// there is no session yet to hold it.
	loginCookie = "meshmon_login"
)

// viewer is whom a session's credential speaks for.
type viewer struct {
	User   string
	Tenant string // empty for the ops account and a central without tenants
	Role   string // noc, admin; empty for ops and a password login
	// Ops: the ops account's credential, which reads every tenant's
	// events through its imports (live, and replays of their EVENTS
	// streams) and nothing else.
	Ops bool
	// Account is the public key of the credential's account.
	Account string
}

// session is one logged-in user: the NATS connection made with its
// credential, which every read of its pages goes through.
type session struct {
	id, csrf string
	who      viewer
	nc       *nats.Conn
	js       jetstream.JetStream
	// opts are the options nc was dialled with (the user's credential),
	// for a connection of the same user that takes its replies elsewhere
	// (siteConn).
	opts    []nats.Option
	created time.Time
	// reads lets one page read at a time: a tenant's NOC user owns a
	// few consumer names only (tenancy.ConsumerSlots).
	reads chan struct{}

	mu       sync.Mutex
	lastUsed time.Time
}

// acquire waits for the session's read slot; release gives it back.
func (se *session) acquire(ctx context.Context) error {
	select {
	case se.reads <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (se *session) release() { <-se.reads }

// sessions are the logged-in users by session id.
type sessions struct {
	cfg Config
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(cfg Config) *sessions { return &sessions{cfg: cfg, m: map[string]*session{}} }

// add makes a session of nc for who; false when the console holds
// MaxSessions already. A user at MaxUserSessions loses its least recently
// used session to the new one.
func (ss *sessions) add(nc *nats.Conn, who viewer, opts []nats.Option) (*session, bool) {
	// Central's JetStream domain: a valid name, so no error.
	js, _ := jetstream.NewWithDomain(nc, bus.HubDomain)
	now := ss.cfg.Now()
	se := &session{id: randomToken(), csrf: randomToken(), who: who, nc: nc, js: js, opts: opts, created: now, lastUsed: now, reads: make(chan struct{}, 1)}
	ss.mu.Lock()
	oldest := ss.evictable(who)
	if oldest != nil {
		delete(ss.m, oldest.id)
	} else if len(ss.m) >= ss.cfg.MaxSessions {
		ss.mu.Unlock()
		return nil, false
	}
	ss.m[se.id] = se
	ss.mu.Unlock()
	if oldest != nil {
		oldest.nc.Close()
	}
	return se, true
}

// full reports whether a login of who would find no session: the
// console holds MaxSessions, and who is not at its own limit (where it
// would take its own least recently used one).
func (ss *sessions) full(who viewer) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m) >= ss.cfg.MaxSessions && ss.evictable(who) == nil
}

// evictable is who's least recently used session when who holds
// MaxUserSessions (never with PasswordLogin), which its next login
// ends; nil otherwise. ss.mu is held.
func (ss *sessions) evictable(who viewer) *session {
	if ss.cfg.PasswordLogin {
		return nil
	}
	var oldest *session
	n := 0
	for _, o := range ss.m {
		if o.who.Account != who.Account || o.who.User != who.User {
			continue
		}
		n++
		if oldest == nil || o.used().Before(oldest.used()) {
			oldest = o
		}
	}
	if n < ss.cfg.MaxUserSessions {
		return nil
	}
	return oldest
}

// used is when the session was last used.
func (se *session) used() time.Time {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.lastUsed
}

// get returns the live session of id and marks it used; an expired one is
// ended.
func (ss *sessions) get(id string) *session {
	now := ss.cfg.Now()
	ss.mu.Lock()
	se := ss.m[id]
	ss.mu.Unlock()
	if se == nil {
		return nil
	}
	if ss.expired(se, now) {
		ss.end(se)
		return nil
	}
	se.mu.Lock()
	se.lastUsed = now
	se.mu.Unlock()
	return se
}

func (ss *sessions) expired(se *session, now time.Time) bool {
	se.mu.Lock()
	defer se.mu.Unlock()
	return now.Sub(se.lastUsed) > ss.cfg.SessionIdle || now.Sub(se.created) > ss.cfg.SessionMax
}

// end removes the session and closes its connection.
func (ss *sessions) end(se *session) {
	ss.mu.Lock()
	delete(ss.m, se.id)
	ss.mu.Unlock()
	se.nc.Close()
}

// expire ends expired sessions every minute until ctx is done.
func (ss *sessions) expire(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := ss.cfg.Now()
		ss.mu.Lock()
		var old []*session
		for _, se := range ss.m {
			old = append(old, se)
		}
		ss.mu.Unlock()
		for _, se := range old {
			if ss.expired(se, now) {
				log.Info("console session expired", "user", se.who.User, "tenant", se.who.Tenant)
				ss.end(se)
			}
		}
	}
}

func (ss *sessions) closeAll() {
	ss.mu.Lock()
	all := ss.m
	ss.m = map[string]*session{}
	ss.mu.Unlock()
	for _, se := range all {
		se.nc.Close()
	}
}

// randomToken is 32 random bytes, base64url: a session id or CSRF token.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameToken compares tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// setCookie sets an HttpOnly, SameSite=Strict cookie, Secure when the
// console serves TLS; maxAge < 0 deletes it.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// sameOrigin refuses a POST another site's page made: its Origin (when the
// browser sends one) must be this console's.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	return o == "https://"+r.Host || o == "http://"+r.Host
}

// withSession runs h with the request's session; without one a page
// redirects to the login page (the event stream answers 401). A POST must
// carry the session's CSRF token and come from this console's pages.
func (s *Server) withSession(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var se *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			se = s.sessions.get(c.Value)
		}
		if se == nil {
			if r.Method != http.MethodGet || r.URL.Path == "/events/stream" {
				http.Error(w, "not logged in (or the session expired): log in again", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || !sameToken(r.PostFormValue("csrf"), se.csrf) {
				http.Error(w, "csrf: the form's token does not match the session's; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, se)
	}
}

// logout ends the session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, se *session) {
	s.sessions.end(se)
	s.setCookie(w, sessionCookie, "", -1)
	s.log.Info("console logout", "user", se.who.User, "tenant", se.who.Tenant)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
