package meshmon

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"10GiB", 10 << 30, true},
		{"10gib", 10 << 30, true},
		{"512MB", 512e6, true},
		{"1.5G", 3 << 29, true},
		{"2 KiB", 2048, true},
		{"0", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"10XB", 0, false},
		{"GiB", 0, false},
		{"99999999999TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := FormatSize(10 << 30); s != "10GiB" {
		t.Errorf("FormatSize = %q", s)
	}
}

func TestParseAge(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true},
		{"2w", 14 * day, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"0s", 0, true},
		{"", 0, false},
		{"30", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"3y", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseAge(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseAge(%q) = %s, %v; want %s, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := FormatAge(30 * day); s != "30d" {
		t.Errorf("FormatAge = %q", s)
	}
}

func TestShowSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 1000: "1000B", 1536: "1.5KiB", 10 << 30: "10GiB", 10146860236: "9.4GiB", 3 << 40: "3TiB", -1: "-1B",
	} {
		if got := ShowSize(n); got != want {
			t.Errorf("ShowSize(%d) = %q, want %q", n, got, want)
		}
	}
}
