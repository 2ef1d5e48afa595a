package cliflags

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSince: a duration back from now, an RFC 3339 time, or an error that
// names --since and says what it wants.
func TestSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"", time.Time{}, ""},
		{"15m", now.Add(-15 * time.Minute), ""},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{"-5m", time.Time{}, "the duration must be positive"},
		{"yesterday", time.Time{}, "want a duration back from now"},
	} {
		got, err := Since(tt.in, now)
		if tt.err == "" && (err != nil || !got.Equal(tt.want)) {
			t.Errorf("Since(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "--since")) {
			t.Errorf("Since(%q): %v; want an error naming --since and %q", tt.in, err, tt.err)
		}
	}
}

// TestReadSecret: the file's content without its trailing newline; an
// empty file is an error.
func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecret(f); err != nil || got != "s3cret" {
		t.Fatalf("ReadSecret = %q, %v", got, err)
	}
	if err := os.WriteFile(f, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecret(f); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("an empty secret: %v", err)
	}
}

// TestLogger: the levels and formats it takes, and errors naming the flag.
func TestLogger(t *testing.T) {
	if _, err := Logger(nil, "warn", "json"); err != nil {
		t.Fatal(err)
	}
	if _, err := Logger(nil, "loud", "text"); err == nil || !strings.HasPrefix(err.Error(), "--log-level") {
		t.Fatalf("a bad level: %v", err)
	}
	if _, err := Logger(nil, "info", "xml"); err == nil || !strings.HasPrefix(err.Error(), "--log-format") {
		t.Fatalf("a bad format: %v", err)
	}
}
