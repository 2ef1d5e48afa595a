// Package eventually is the tests' one way to wait for a condition: poll it
// until it holds or a deadline passes, then fail the test with what was
// awaited (and the condition's last error). Polling is the wait; no test
// sleeps to let another goroutine get somewhere.
package eventually

import (
	"testing"
	"time"
)

// Every is the polling interval.
const Every = 20 * time.Millisecond

// True polls cond until it returns true; after within it fails t with
// "timed out after <within> waiting for <what>".
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(Every)
	}
}

// NoError polls f until it returns nil; after within it fails t with
// what was awaited and f's last error.
func NoError(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", within, what, err)
		}
		time.Sleep(Every)
	}
}
