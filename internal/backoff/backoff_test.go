package backoff

import (
	"context"
	"testing"
	"time"
)

func within(d, want time.Duration) bool { return d >= want-want/5 && d <= want+want/5 }

func TestBackoffDoublesToMaxAndResets(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		if d := b.Next(); !within(d, want) {
			t.Fatalf("wait %d = %s, want %s ±20%%", i, d, want)
		}
	}
	b.Reset()
	if d := b.Next(); !within(d, 100*time.Millisecond) {
		t.Fatalf("after Reset: wait = %s, want 100ms ±20%%", d)
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[New(time.Second, time.Second).Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 first waits took %d distinct values: not jittered", len(seen))
	}
}

func TestBackoffBounds(t *testing.T) {
	b := New(0, -1)
	if d := b.Next(); d <= 0 || d > 2*time.Millisecond {
		t.Fatalf("New(0, -1).Next() = %s, want about 1ms", d)
	}
	if Jitter(0) != 0 || Jitter(-time.Second) != -time.Second {
		t.Fatal("Jitter changed a zero or negative duration")
	}
}

func TestSleepStopsAtCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep reported a cancel on a live context")
	}
}
