package notify_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/notify"
	"github.com/meshmon/meshmon/pki"
)

func message() notify.Message {
	c := change(alarm.WhatOpened, func(a *alarm.Alarm) { a.Message = "rtr1 stopped answering ping\r\nBcc: evil@example.net" })
	return notify.Message{Items: []notify.Item{{ID: c.MsgID(), What: c.What, Rule: "crit", At: c.At, Alarm: c.Alarm}}}
}

// capture is an HTTP receiver that keeps the last request.
type capture struct {
	mu     sync.Mutex
	body   []byte
	header http.Header
}

func (c *capture) server(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.body, c.header = b, r.Header.Clone()
		c.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func TestWebhookIsSignedWithTheChannelSecret(t *testing.T) {
	var c capture
	srv := c.server(t)
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	ch := notify.Channel{Name: "hook", Type: notify.TypeWebhook, URL: srv.URL, AllowPlaintext: true}
	ctx := context.Background()
	if err := s.Send(ctx, "acme", ch, []byte("s3cret"), "d1", message()); err != nil {
		t.Fatal(err)
	}
	if !notify.Verify([]byte("s3cret"), c.body, c.header.Get(notify.HeaderSignature)) {
		t.Fatalf("signature %q does not verify", c.header.Get(notify.HeaderSignature))
	}
	if notify.Verify([]byte("other"), c.body, c.header.Get(notify.HeaderSignature)) {
		t.Fatal("the signature verifies under another secret")
	}
	var env notify.Envelope
	if err := json.Unmarshal(c.body, &env); err != nil {
		t.Fatal(err)
	}
	if env.Delivery != "d1" || c.header.Get(notify.HeaderDelivery) != "d1" || env.Tenant != "acme" || len(env.Items) != 1 || env.Items[0].Alarm.Device != "rtr1" {
		t.Fatalf("envelope %+v, delivery header %q", env, c.header.Get(notify.HeaderDelivery))
	}
}

func TestWebhookRefusalIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadGateway) }))
	t.Cleanup(srv.Close)
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	err := s.Send(context.Background(), "acme", notify.Channel{Name: "hook", Type: notify.TypeWebhook, URL: srv.URL, AllowPlaintext: true}, []byte("k"), "d1", message())
	if !errors.Is(err, notify.ErrStatus) {
		t.Fatalf("err %v, want ErrStatus", err)
	}
}

func TestChatFormats(t *testing.T) {
	var c capture
	srv := c.server(t)
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	ctx := context.Background()
	// The chat tool's URL is the channel's secret.
	if err := s.Send(ctx, "acme", notify.Channel{Name: "slack", Type: notify.TypeSlack, AllowPlaintext: true}, []byte(srv.URL+"/services/T0/B0/x\n"), "d1", message()); err != nil {
		t.Fatal(err)
	}
	var slack struct{ Text string }
	if err := json.Unmarshal(c.body, &slack); err != nil || !strings.Contains(slack.Text, "CRITICAL opened: paris/rtr1 node_down") {
		t.Fatalf("slack body %s (%v)", c.body, err)
	}
	if err := s.Send(ctx, "acme", notify.Channel{Name: "teams", Type: notify.TypeTeams, AllowPlaintext: true}, []byte(srv.URL), "d2", message()); err != nil {
		t.Fatal(err)
	}
	var teams struct {
		Type        string
		Attachments []struct {
			ContentType string
			Content     struct {
				Type string
				Body []struct{ Type, Text string }
			}
		}
	}
	if err := json.Unmarshal(c.body, &teams); err != nil || teams.Type != "message" || len(teams.Attachments) != 1 ||
		teams.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" || teams.Attachments[0].Content.Type != "AdaptiveCard" ||
		!strings.Contains(teams.Attachments[0].Content.Body[0].Text, "paris/rtr1") {
		t.Fatalf("teams body %s (%v)", c.body, err)
	}
}

// sink is an SMTP server that takes mail from one user over STARTTLS.
type sink struct {
	mu   sync.Mutex
	mail []string
	tls  []bool
	auth bool
}

type session struct {
	s    *sink
	c    *smtp.Conn
	auth bool
}

func (s *sink) NewSession(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, c: c}, nil }
func (x *session) AuthMechanisms() []string                   { return []string{sasl.Plain} }
func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "meshmon" || pass != "mail-pass" {
			return errors.New("bad credentials")
		}
		x.auth = true
		return nil
	}), nil
}
func (x *session) Mail(string, *smtp.MailOptions) error {
	if x.s.auth && !x.auth {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (x *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	_, isTLS := x.c.TLSConnectionState()
	x.s.mu.Lock()
	x.s.mail = append(x.s.mail, string(b))
	x.s.tls = append(x.s.tls, isTLS)
	x.s.mu.Unlock()
	return err
}
func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }

// startSink starts an SMTP server on loopback, offering STARTTLS with a
// certificate of a test CA when withTLS; it returns its address and the
// CA's certificate.
func startSink(t *testing.T, withTLS bool) (*sink, string, []byte) {
	t.Helper()
	sk := &sink{auth: withTLS}
	srv := smtp.NewServer(sk)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	var caPEM []byte
	if withTLS {
		ca, err := pki.NewCA("test mail CA", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		iss, err := ca.Issue("mail", []string{"localhost", "127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		caPEM = ca.CertPEM
	} else {
		srv.AllowInsecureAuth = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sk, l.Addr().String(), caPEM
}

func TestEmailOverSTARTTLS(t *testing.T) {
	sk, addr, ca := startSink(t, true)
	ch := notify.Channel{Name: "mail", Type: notify.TypeEmail, SMTP: strings.Replace(addr, "127.0.0.1", "localhost", 1),
		From: "meshmon@example.net", To: []string{"noc@example.net", "oncall@example.net"}, SMTPUser: "meshmon", SMTPCA: string(ca)}
	if err := ch.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	if err := s.Send(ctx, "acme", ch, []byte("mail-pass"), "paris.rtr1.icmp.4.mail", message()); err != nil {
		t.Fatal(err)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.mail) != 1 || !sk.tls[0] {
		t.Fatalf("%d mails, tls %v", len(sk.mail), sk.tls)
	}
	m := sk.mail[0]
	for _, want := range []string{"X-Meshmon-Delivery: paris.rtr1.icmp.4.mail\r\n", "Subject: [meshmon] CRITICAL opened: paris/rtr1 node_down: rtr1 stopped answering ping  Bcc: evil@example.net\r\n", "To: noc@example.net, oncall@example.net\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("mail lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "\r\nBcc:") {
		t.Fatalf("a device's message added a header:\n%s", m)
	}
	// A wrong password is refused by the server: an error, not a send.
	if err := s.Send(ctx, "acme", ch, []byte("wrong"), "d2", message()); err == nil {
		t.Fatal("sent with a wrong password")
	}
	// Without the CA the server's certificate is not trusted.
	ch.SMTPCA = ""
	if err := s.Send(ctx, "acme", ch, []byte("mail-pass"), "d3", message()); err == nil {
		t.Fatal("sent to a server whose certificate is not trusted")
	}
}

func TestEmailWithoutSTARTTLSNeedsPlaintextAllowed(t *testing.T) {
	sk, addr, _ := startSink(t, false)
	ch := notify.Channel{Name: "mail", Type: notify.TypeEmail, SMTP: addr, From: "meshmon@example.net", To: []string{"noc@example.net"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	if err := s.Send(ctx, "acme", ch, nil, "d1", message()); !errors.Is(err, notify.ErrNoStartTLS) {
		t.Fatalf("err %v, want ErrNoStartTLS", err)
	}
	ch.AllowPlaintext = true
	if err := s.Send(ctx, "acme", ch, nil, "d1", message()); err != nil {
		t.Fatal(err)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.mail) != 1 || sk.tls[0] {
		t.Fatalf("%d mails, tls %v", len(sk.mail), sk.tls)
	}
}

func TestValidate(t *testing.T) {
	good := notify.Channel{Name: "hook", Type: notify.TypeWebhook, URL: "https://example.net/h"}
	for _, tc := range []struct {
		name string
		f    func(*notify.Channel)
		want string
	}{
		{"bad name", func(c *notify.Channel) { c.Name = "a.b" }, "channel"},
		{"bad type", func(c *notify.Channel) { c.Type = "pager" }, "type"},
		{"bad url", func(c *notify.Channel) { c.URL = "ftp://x" }, "url"},
		{"plaintext url", func(c *notify.Channel) { c.URL = "http://example.net/h" }, "allow_plaintext"},
		{"slack url in the channel", func(c *notify.Channel) { c.Type, c.URL = notify.TypeSlack, "https://hooks.slack.com/x" }, "url"},
		{"rate without burst", func(c *notify.Channel) { c.RatePerMinute = 5 }, "burst"},
		{"email without port", func(c *notify.Channel) { c.Type, c.URL, c.SMTP = notify.TypeEmail, "", "mail.example.net" }, "smtp"},
		{"email bad from", func(c *notify.Channel) {
			c.Type, c.URL, c.SMTP, c.From = notify.TypeEmail, "", "mail:587", "x\r\nBcc: y"
		}, "from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.f(&c)
			err := c.Validate()
			if !errors.Is(err, notify.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalid naming %s", err, tc.want)
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	// A chat URL (the secret) over http:// is refused at send, without
	// the URL in the error.
	err := (&notify.Sender{Reach: notify.Reach{AllowLoopback: true}}).Send(context.Background(), "acme", notify.Channel{Name: "slack", Type: notify.TypeSlack}, []byte("http://chat.example.net/T0/s3cret"), "d", message())
	if !errors.Is(err, notify.ErrInvalid) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err %v, want ErrInvalid without the URL", err)
	}
	r := notify.Rule{Name: "r", Channels: []string{"hook"}, Escalation: []notify.Step{{After: 10 * time.Minute, Channel: "hook"}, {After: 5 * time.Minute, Channel: "hook"}}}
	if err := r.Validate([]string{"hook"}); !errors.Is(err, notify.ErrInvalid) || !strings.Contains(err.Error(), "step 2") {
		t.Fatalf("err %v, want the second step named", err)
	}
	r.Escalation = nil
	if err := r.Validate([]string{"other"}); !errors.Is(err, notify.ErrInvalid) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err %v, want the missing channel named", err)
	}
	r.Severities = []string{"fatal"}
	if err := r.Validate(nil); !errors.Is(err, notify.ErrInvalid) || !strings.Contains(err.Error(), "severity") {
		t.Fatalf("err %v, want the severity named", err)
	}
}

// TestChatFormatsEscapeDeviceText: an alarm's message comes from devices
// and pollers (an interface's name, a trap's text); in a chat message it
// neither pings a whole Slack channel nor becomes a link that shows only
// its text, in Slack or Teams.
func TestChatFormatsEscapeDeviceText(t *testing.T) {
	var c capture
	srv := c.server(t)
	s := &notify.Sender{Reach: notify.Reach{AllowLoopback: true}}
	m := message()
	m.Items[0].Alarm.Message = `interface <!channel> <https://evil.example|log in again> [log in](https://evil.example) & more`
	if err := s.Send(context.Background(), "acme", notify.Channel{Name: "slack", Type: notify.TypeSlack, AllowPlaintext: true}, []byte(srv.URL), "d1", m); err != nil {
		t.Fatal(err)
	}
	var slack struct{ Text string }
	if err := json.Unmarshal(c.body, &slack); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(slack.Text, "<>") || !strings.Contains(slack.Text, "&lt;!channel&gt;") || !strings.Contains(slack.Text, "&amp; more") {
		t.Errorf("slack text not escaped: %s", slack.Text)
	}
	if err := s.Send(context.Background(), "acme", notify.Channel{Name: "teams", Type: notify.TypeTeams, AllowPlaintext: true}, []byte(srv.URL), "d2", m); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(c.body), "](https://evil") || !strings.Contains(string(c.body), "[log in]\u200b(https://evil.example)") {
		t.Errorf("teams card keeps a markdown link: %s", c.body)
	}
}
