package peer

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// TestLimitsFitTheStore starts peers whose default stream limits (10 GiB
// each) exceed a 64 MiB store: without FitLimits the start fails with one
// error that names the flags to set; with it the peer makes its streams
// two fifths of the room each, and keeps them so at the next start.
func TestLimitsFitTheStore(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxStore = 64 << 20

	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(testCtx(t))
	p.Close()
	if !errors.Is(err, ErrStoreTooSmall) {
		t.Fatalf("start with limits the store cannot hold: %v, want ErrStoreTooSmall", err)
	}
	for _, flag := range []string{"--events-max-bytes", "--metrics-max-bytes"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("the error does not name %s: %v", flag, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error is more than one line: %q", err)
	}

	cfg.FitLimits = true
	const want = int64(25 << 20) // 64 MiB * 2/5, in whole MiB
	for start := range 2 {
		p := startPeer(t, cfg)
		nc, err := p.InProcessConn()
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{bus.EventsStream, bus.MetricsStream} {
			s, err := js.Stream(testCtx(t), name)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().Config.MaxBytes; got != want {
				t.Errorf("start %d: %s max bytes %d, want %d", start, name, got, want)
			}
		}
		nc.Close()
		p.Close()
	}
}
