package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"strings"
	"time"
)

// Headers every webhook delivery carries.
const (
	// HeaderDelivery is the delivery's idempotency ID: the same on every
	// attempt of the same notification, so a receiver can drop a repeat.
	HeaderDelivery = "X-Meshmon-Delivery"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body
	// under the channel's secret.
	HeaderSignature = "X-Meshmon-Signature"
)

// Sender delivers messages to channels. Its zero value works.
type Sender struct {
	HTTP *http.Client // nil: Client(Reach, 30 s)
	Now  func() time.Time
	// Reach is where deliveries may connect (see Dialer); mail always
	// dials through Dialer.
	Reach Reach
}

// Send delivers m to ch, signed or authenticated with secret, as the
// delivery called delivery. It makes one attempt: the caller retries.
func (s *Sender) Send(ctx context.Context, tenant string, ch Channel, secret []byte, delivery string, m Message) error {
	switch ch.Type {
	case TypeWebhook:
		body, err := json.Marshal(Envelope{Delivery: delivery, Tenant: tenant, Channel: ch.Name, Sent: s.now().UTC(), Message: m})
		if err != nil {
			return err
		}
		return s.post(ctx, ch.URL, body, delivery, Sign(secret, body))
	case TypeSlack, TypeTeams:
		f := slackBody
		if ch.Type == TypeTeams {
			f = teamsBody
		}
		body, err := f(m)
		if err != nil {
			return err
		}
		u := strings.TrimSpace(string(secret))
		if !strings.HasPrefix(u, "https://") && !(ch.AllowPlaintext && strings.HasPrefix(u, "http://")) {
			// Not the URL itself in the error: it carries a token.
			return fmt.Errorf("%w: channel %s: the secret is not an https:// URL (http:// only with allow_plaintext)", ErrInvalid, ch.Name)
		}
		return s.post(ctx, u, body, delivery, "")
	case TypeEmail:
		return s.mail(ctx, ch, string(secret), delivery, m)
	}
	return fmt.Errorf("%w: channel %s: type %q", ErrInvalid, ch.Name, ch.Type)
}

// Sign is the HeaderSignature value of body under secret.
func Sign(secret, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

// Verify reports whether sig is body's signature under secret (for
// receivers: compare in constant time).
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) post(ctx context.Context, target string, body []byte, delivery, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		// The URL may be a secret: say no more than that it is bad.
		return fmt.Errorf("%w: the channel's URL does not make a request", ErrInvalid)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "meshmon-notify")
	req.Header.Set(HeaderDelivery, delivery)
	if sig != "" {
		req.Header.Set(HeaderSignature, sig)
	}
	c := s.HTTP
	if c == nil {
		c = Client(s.Reach, 30*time.Second)
	}
	resp, err := c.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, which may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: HTTP %d", ErrStatus, resp.StatusCode)
	}
	return nil
}

// mail sends m over SMTP: STARTTLS (verified against the channel's CA,
// or the system's) unless the server offers none and the channel allows
// plaintext; PLAIN authentication when the channel has a user.
func (s *Sender) mail(ctx context.Context, ch Channel, password, delivery string, m Message) error {
	host, _, err := net.SplitHostPort(ch.SMTP)
	if err != nil {
		return fmt.Errorf("%w: channel %s: smtp %q: %w", ErrInvalid, ch.Name, ch.SMTP, err)
	}
	conn, err := Dialer(s.Reach, 30*time.Second).DialContext(ctx, "tcp", ch.SMTP)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	if err := c.Hello("meshmon"); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if ch.SMTPCA != "" {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM([]byte(ch.SMTPCA)) {
				return fmt.Errorf("%w: channel %s: smtp_ca holds no PEM certificate", ErrInvalid, ch.Name)
			}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("smtp starttls: %w", err)
		}
	} else if !ch.AllowPlaintext {
		return ErrNoStartTLS
	}
	if ch.SMTPUser != "" {
		if err := c.Auth(smtp.PlainAuth("", ch.SMTPUser, password, host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(ch.From); err != nil {
		return fmt.Errorf("smtp mail from: %w", err)
	}
	for _, to := range ch.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp rcpt to %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if _, err := w.Write(mailBody(ch, delivery, s.now(), m)); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	return c.Quit()
}

// mailBody is the message in RFC 5322 form, CRLF line ends.
func mailBody(ch Channel, delivery string, now time.Time, m Message) []byte {
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + oneLine(v) + "\r\n") }
	h("From", ch.From)
	h("To", strings.Join(ch.To, ", "))
	h("Subject", m.Subject())
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+delivery+"@meshmon>")
	h(HeaderDelivery, delivery)
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for _, l := range strings.Split(strings.TrimRight(m.Text(), "\n"), "\n") {
		b.WriteString(l + "\r\n")
	}
	return []byte(b.String())
}
