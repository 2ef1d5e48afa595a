package peer

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestServerLoggerRepeats: a warning or an error of the server that
// repeats (the same text but for its digits: a site dialling central again
// every 250 ms with a TLS handshake refused) is logged once a minute, with
// how often it came meanwhile; a different one, and notices, at once.
func TestServerLoggerRepeats(t *testing.T) {
	var buf bytes.Buffer
	l := newServerLogger(slog.New(slog.NewTextHandler(&buf, nil)), t.TempDir())
	now := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	l.repeats.now = func() time.Time { return now }
	for i := range 240 { // a minute of attempts
		l.Errorf("Error trying to connect as leafnode to remote server %q (attempt %v): %v", "127.0.0.1:7422", i+1, "tls: bad certificate")
		l.Noticef("%s - lid:%d - Leafnode connection closed", "127.0.0.1:7422", i)
		now = now.Add(250 * time.Millisecond)
	}
	l.Warnf("another warning")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	count := func(s string) int {
		n := 0
		for _, line := range lines {
			if strings.Contains(line, s) {
				n++
			}
		}
		return n
	}
	if n := count("trying to connect"); n != 1 {
		t.Errorf("the repeated error logged %d times in its minute, want once:\n%s", n, buf.String())
	}
	if n := count("connection closed"); n != 240 {
		t.Errorf("notices logged %d times, want each of 240", n)
	}
	if n := count("another warning"); n != 1 {
		t.Errorf("a different warning logged %d times, want once", n)
	}
	l.Errorf("Error trying to connect as leafnode to remote server %q (attempt %v): %v", "127.0.0.1:7422", 241, "tls: bad certificate")
	if last := buf.String()[strings.LastIndex(strings.TrimSpace(buf.String()), "\n")+1:]; !strings.Contains(last, "attempt 241") || !strings.Contains(last, "repeated=239") {
		t.Errorf("after its minute, the error again with its repeats: %s", last)
	}
}
