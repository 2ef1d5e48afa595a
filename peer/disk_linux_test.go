package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/storage"
)

// mountTinyFS mounts a tmpfs of the given size on a fresh directory and
// unmounts it when the test ends. It needs root; without root the test is
// skipped, except under CI=true, where a skipped disk-full test would hide a
// broken runner.
func mountTinyFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full test mounts a tmpfs and needs root; CI=true requires it to run")
		}
		t.Skip("skipping: mounting a tmpfs to fill needs root (run as root, or set CI=true to make this a failure)")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return path
		}
	}
}

// TestDiskFullRefusesAndResumes runs a site peer on a 64 MiB file system
// and a poller's spool beside it (on another file system, as a poller
// runs). With the disk filled by a file, the peer refuses the poller's
// batch with an error that wraps meshmon.ErrPeerDiskFull, and the spool
// keeps it; once the file is gone the peer stores again by itself, without
// a restart, its stream and consumer as they were, and the stream holds
// every event exactly once, in order.
func TestDiskFullRefusesAndResumes(t *testing.T) {
	dir := mountTinyFS(t, "64m")
	cfg := testConfig(t)
	cfg.DataDir = dir
	cfg.Limits.EventsMaxBytes = 8 << 20
	cfg.Limits.MetricsMaxBytes = 8 << 20
	p := startPeer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nc, err := bus.Connect(bus.ConnConfig{URL: p.ClientURL(), Name: "poller"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "noc", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	pub := bus.NewPublisher(js)
	spool, err := storage.Open(filepath.Join(t.TempDir(), "poller.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	var want []string
	enqueue := func(prefix string, n int) {
		msgs := make([]meshmon.Message, n)
		for i := range msgs {
			msgs[i] = meshmon.Message{
				Stream: meshmon.StreamEvents, Site: "hq", Device: fmt.Sprintf("dev%d", i%7), Kind: meshmon.KindNodeDown,
				ID:   fmt.Sprintf("%s-%d", prefix, i),
				Data: make([]byte, 512),
			}
			want = append(want, msgs[i].ID)
		}
		if err := spool.Commit(msgs, nil); err != nil {
			t.Fatal(err)
		}
	}
	spooled := func() int {
		n, _, err := spool.SpoolStats()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// drain is the poller's send path: one DrainOnce. The publish timeout
	// bounds only the first batch after the disk filled, which the server
	// leaves unanswered.
	drain := func() error {
		_, _, err := poller.DrainOnce(ctx, spool, pub, 100, 3*time.Second)
		return err
	}

	enqueue("before", 300)
	checkFor(t, 30*time.Second, func() error {
		if err := drain(); err != nil {
			return err
		}
		if n := spooled(); n > 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})

	filled := fill(t, dir)
	enqueue("full", 300)
	checkFor(t, 60*time.Second, func() error {
		err := drain()
		if errors.Is(err, meshmon.ErrPeerDiskFull) {
			return nil
		}
		return fmt.Errorf("drain on a full disk: %v; want an error wrapping meshmon.ErrPeerDiskFull", err)
	})
	if spooled() == 0 {
		t.Fatal("the spool is empty while the peer's disk is full")
	}
	// Message by message (no atomic batch) it is refused alike.
	one := bus.NewPublisher(js)
	one.MaxAtomic = 1
	if n, err := one.PublishBatch(ctx, []meshmon.Message{{Stream: meshmon.StreamEvents, Site: "hq", Device: "dev0", Kind: meshmon.KindNodeDown, ID: "full-0", Data: []byte("x")}}); n != 0 || !errors.Is(err, meshmon.ErrPeerDiskFull) {
		t.Fatalf("a single publish on a full disk: %d, %v; want 0 and meshmon.ErrPeerDiskFull", n, err)
	}

	if err := os.Remove(filled); err != nil {
		t.Fatal(err)
	}
	enqueue("after", 300)
	checkFor(t, 60*time.Second, func() error {
		if err := drain(); err != nil {
			return err
		}
		if n := spooled(); n > 0 {
			return fmt.Errorf("%d still spooled", n)
		}
		return nil
	})
	if !p.Server().JetStreamEnabled() {
		t.Fatal("JetStream is off after storing resumed")
	}

	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("EVENTS holds %d messages, want %d", info.State.Msgs, len(want))
	}
	for i, id := range want {
		m, err := s.GetMsg(ctx, info.State.FirstSeq+uint64(i))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != id {
			t.Fatalf("message %d has id %s, want %s", i, got, id)
		}
	}
	c, err := s.Consumer(ctx, "noc")
	if err != nil {
		t.Fatalf("the consumer after storing resumed: %v", err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumPending != uint64(len(want)) {
		t.Fatalf("consumer noc has %d pending, want %d", ci.NumPending, len(want))
	}
}
