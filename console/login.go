package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/tenancy"
)

// maxCredsBytes bounds an uploaded or pasted .creds file (one is about
// 1.5 KiB; a user JWT is at most 4 KiB).
const maxCredsBytes = 16 << 10

// loginData is what the login page shows.
type loginData struct {
	CSRF          string
	PasswordLogin bool
	Error         string
}

// loginPage shows the login form with a fresh CSRF token.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.showLogin(w, http.StatusOK, "")
}

func (s *Server) showLogin(w http.ResponseWriter, status int, msg string) {
	tok := randomToken()
	s.setCookie(w, loginCookie, tok, 600)
	s.render(w, status, "login", page{Title: "Log in", Data: loginData{CSRF: tok, PasswordLogin: s.cfg.PasswordLogin, Error: msg}})
}

// loginError is a refused login: the status and the one line the page
// shows.
type loginError struct {
	status int
	msg    string
}

func (e *loginError) Error() string { return e.msg }

func refuse(status int, format string, a ...any) error {
	return &loginError{status: status, msg: fmt.Sprintf(format, a...)}
}

// login opens a NATS connection with the posted credential and, when
// central takes it, starts a session of it.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4*maxCredsBytes)
	addr := clientKey(r)
	se, user, err := s.loginSession(w, r, addr)
	if err != nil {
		var le *loginError
		if !errors.As(err, &le) {
			le = &loginError{status: http.StatusBadRequest, msg: err.Error()}
		}
		if le.status == http.StatusUnauthorized {
			// Central refused the credential: what guessing looks like.
			s.limiter.failed(addr, user)
		}
		s.log.Info("console login refused", "remote", r.RemoteAddr, "err", le.msg)
		s.showLogin(w, le.status, le.msg)
		return
	}
	s.limiter.succeeded(addr, user)
	if c, err := r.Cookie(sessionCookie); err == nil {
		// A login replaces the browser's session: the old one's
		// connection does not linger until it expires.
		if old := s.sessions.get(c.Value); old != nil {
			s.sessions.end(old)
		}
	}
	s.setCookie(w, loginCookie, "", -1)
	s.setCookie(w, sessionCookie, se.id, int(s.cfg.SessionMax/time.Second))
	s.log.Info("console login", "user", se.who.User, "tenant", se.who.Tenant, "role", se.who.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginSession checks the login limits, the form and its credential and
// makes the session. It returns the limiter's key of the user the form
// names, once known. A client or user locked out by the limits is refused
// before central sees its credential.
func (s *Server) loginSession(w http.ResponseWriter, r *http.Request, addr string) (*session, string, error) {
	if left, key := s.limiter.locked(addr); left > 0 {
		return nil, "", tooMany(w, left, key, s.cfg)
	}
	if err := r.ParseMultipartForm(4 * maxCredsBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return nil, "", refuse(http.StatusBadRequest, "the login form could not be read: %v", err)
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !sameToken(r.PostFormValue("csrf"), c.Value) {
		return nil, "", refuse(http.StatusForbidden, "csrf: the login form's token does not match; reload the page and try again")
	}
	opts, who, user, err := s.loginCredential(r)
	if err != nil {
		return nil, user, err
	}
	if left, key := s.limiter.locked(user); left > 0 {
		return nil, user, tooMany(w, left, key, s.cfg)
	}
	full := refuse(http.StatusServiceUnavailable, "the console holds %d sessions, its limit; try again later", s.cfg.MaxSessions)
	if s.sessions.full(who) {
		return nil, user, full
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	opts = append(opts, nats.Name("meshmon-console "+who.User), nats.MaxReconnects(-1))
	nc, err := s.cfg.Dial(ctx, opts...)
	if err != nil {
		return nil, user, refuse(http.StatusUnauthorized, "central refused the credential: %v", err)
	}
	se, ok := s.sessions.add(nc, who, opts)
	if !ok {
		nc.Close()
		return nil, user, full
	}
	return se, user, nil
}

// loginCredential reads the form's credential: the options to dial
// with, whom it speaks for, and the limiter's key of its user (the
// password login's user, or the .creds user's public key and name).
func (s *Server) loginCredential(r *http.Request) ([]nats.Option, viewer, string, error) {
	creds, err := postedCreds(r)
	if err != nil {
		return nil, viewer{}, "", err
	}
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	switch {
	case len(creds) > 0 && (user != "" || password != ""):
		return nil, viewer{}, "", refuse(http.StatusBadRequest, "creds and user/password are alternatives; give one")
	case len(creds) > 0:
		opts, who, key, err := credsLogin(creds)
		return opts, who, key, err
	case !s.cfg.PasswordLogin:
		return nil, viewer{}, "", refuse(http.StatusBadRequest, "creds: upload or paste the .creds file 'meshmon tenant creds' wrote")
	case user == "" || password == "":
		return nil, viewer{}, "", refuse(http.StatusBadRequest, "user and password: give both, or a .creds file")
	}
	return []nats.Option{nats.UserInfo(user, password)}, viewer{User: user}, "user " + user, nil
}

// postedCreds is the .creds file uploaded (field creds_file) or pasted
// (field creds); nil when neither.
func postedCreds(r *http.Request) ([]byte, error) {
	pasted := strings.TrimSpace(r.PostFormValue("creds"))
	var uploaded []byte
	if f, _, err := r.FormFile("creds_file"); err == nil {
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxCredsBytes+1))
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "creds_file: %v", err)
		}
		uploaded = b
	}
	switch {
	case len(uploaded) > 0 && pasted != "":
		return nil, refuse(http.StatusBadRequest, "creds: upload a file or paste it, not both")
	case len(uploaded) > maxCredsBytes, len(pasted) > maxCredsBytes:
		return nil, refuse(http.StatusBadRequest, "creds: larger than %d bytes; a .creds file is about 2 KiB", maxCredsBytes)
	case len(uploaded) > 0:
		return uploaded, nil
	case pasted != "":
		return []byte(pasted), nil
	}
	return nil, nil
}

// credsLogin reads a .creds file's user JWT and seed, whom it speaks
// for, and the limiter's key of its user (its name and public key, once
// the JWT parses). Central checks the signature at connect; here only
// the form.
func credsLogin(creds []byte) (opts []nats.Option, who viewer, key string, err error) {
	if !strings.Contains(string(creds), "-----BEGIN NATS USER JWT-----") {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: not a .creds file (no BEGIN NATS USER JWT block)")
	}
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: the user JWT does not parse: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: the JWT is not a user's: %v", err)
	}
	key = "user " + uc.Name + " (" + uc.Subject + ")"
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: no user seed: %v", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: the seed is not a user's: %v", err)
	}
	id, err := tenancy.CredsIdentity(creds)
	if err != nil {
		return nil, viewer{}, key, refuse(http.StatusBadRequest, "creds: %v", err)
	}
	who = viewer{User: id.User, Tenant: id.Tenant, Role: string(id.Role), Account: cmp.Or(uc.IssuerAccount, uc.Issuer)}
	switch id.Role {
	case tenancy.RoleNOC, tenancy.RoleAdmin:
	case "", tenancy.RoleOps:
		// The ops account's (tenant creds --ops; issued before tasks
		// from the ops account, its users had no role).
		who.Ops = true
	default:
		return nil, viewer{}, key, refuse(http.StatusForbidden, "creds: a %s's credential does not log in to the console; use a NOC's, an admin's or the ops account's", id.Role)
	}
	opts = []nats.Option{nats.UserJWTAndSeed(tok, string(seed))}
	if id.Role != "" {
		// A tenant user reads its replies on its own inbox prefix only.
		opts = append(opts, nats.CustomInboxPrefix(tenancy.InboxPrefix(id.User)))
	}
	return opts, who, key, nil
}
