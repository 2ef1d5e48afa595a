package meshmon_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// FuzzParseSize reads byte sizes as the CLI's stream and spool limits do:
// an accepted size is not negative and FormatSize writes it back exactly.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1048576", "512MiB", "10GB", "1.5g", " 2 kib ", "0", "-1", "8TiB", "9223372036854775807", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := meshmon.ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		back, err := meshmon.ParseSize(meshmon.FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, written %q, read back %d, %v", s, n, meshmon.FormatSize(n), back, err)
		}
	})
}

// FuzzParseAge reads ages as the CLI's --max-age does: an accepted age is
// not negative and FormatAge writes it back exactly.
func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"30d", "2w", "1d12h", "90m", "1.5d", "0s", "-1h", "", "1d-1h", "106751d", "2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := meshmon.ParseAge(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseAge(%q) = %v, negative", s, d)
		}
		back, err := meshmon.ParseAge(meshmon.FormatAge(d))
		if err != nil || back != d {
			t.Fatalf("ParseAge(%q) = %v, written %q, read back %v, %v", s, d, meshmon.FormatAge(d), back, err)
		}
	})
}

// FuzzDuration reads durations as device records hold them (a string like
// "30s" or a number of nanoseconds): what reads writes back to itself.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{`"30s"`, `"1m30s"`, `60000000000`, `"-5s"`, `"1e3s"`, `1.5`, `"30"`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d meshmon.Duration
		if json.Unmarshal(b, &d) != nil {
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Duration %v does not encode: %v", d, err)
		}
		var d2 meshmon.Duration
		if err := json.Unmarshal(out, &d2); err != nil || d2 != d {
			t.Fatalf("Duration %v written %s read back %v, %v", time.Duration(d), out, time.Duration(d2), err)
		}
	})
}
