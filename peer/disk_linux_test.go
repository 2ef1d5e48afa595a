package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
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
	// drain is the poller's send path: one DrainOnce.
	drain := func() error {
		_, _, err := poller.DrainOnce(ctx, spool, pub, 100, 3*time.Second)
		return err
	}

	enqueue("before", 300)
	eventually.NoError(t, 30*time.Second, "the spool to drain into the peer", func() error {
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
	// The batch the store fails on gets its answer from the peer too, not
	// only the batches after it: with a publish timeout longer than the
	// test, every drain either stores or is refused, none times out.
	for {
		_, _, err := poller.DrainOnce(ctx, spool, pub, 100, 10*time.Minute)
		if errors.Is(err, meshmon.ErrPeerDiskFull) {
			break
		}
		if err != nil {
			t.Fatalf("drain on a full disk: %v; want an error wrapping meshmon.ErrPeerDiskFull", err)
		}
		if spooled() == 0 {
			t.Fatal("all 300 events stored on a full disk")
		}
	}
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
	eventually.NoError(t, 60*time.Second, "the spool to drain once the disk has room", func() error {
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

// TestDiskFullClusterMember runs a site of three clustered peers, the one
// that leads EVENTS on a 64 MiB file system, and a poller connected to
// that member. With its disk filled by a file, nats-server turns the
// member's JetStream off and the other two store what the poller publishes
// through it (the member refuses nothing); once the file is gone the
// member starts JetStream again by itself, without a restart, and its
// replica of EVENTS catches up: every event once, in order, on all three.
func TestDiskFullClusterMember(t *testing.T) {
	t.Parallel()
	dir := mountTinyFS(t, "64m")
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	peers := make([]*Peer, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		cfg := testConfig(t)
		cfg.Name = fmt.Sprintf("hq-%d", i+1)
		if i == 2 {
			cfg.DataDir = dir
		}
		cfg.Limits.EventsMaxBytes = 8 << 20
		cfg.Limits.MetricsMaxBytes = 8 << 20
		joinCluster(&cfg, routes, i)
		wg.Go(func() { peers[i] = startPeer(t, cfg) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitStreamsReady(t, peers...)
	full := peers[2]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The full member leads EVENTS, so its leadership has to move too.
	eventually.NoError(t, 2*time.Minute, "hq-3 leads EVENTS", func() error {
		for i, p := range peers {
			acc, err := p.Server().LookupAccount(p.cfg.Tenant)
			if err != nil || !acc.JetStreamIsStreamLeader(bus.EventsStream) {
				continue
			}
			if i == 2 {
				return nil
			}
			if err := p.Server().JetStreamStepdownStream(p.cfg.Tenant, bus.EventsStream); err != nil {
				return err
			}
			return fmt.Errorf("%s led it; stepped down", p.cfg.Name)
		}
		return errors.New("no leader")
	})

	nc, err := bus.Connect(bus.ConnConfig{URL: full.ClientURL(), Name: "poller"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub := bus.NewPublisher(js)
	var want []string
	publish := func(prefix string, n int) {
		msgs := make([]meshmon.Message, n)
		for i := range msgs {
			msgs[i] = meshmon.Message{
				Stream: meshmon.StreamEvents, Site: "hq", Device: fmt.Sprintf("dev%d", i%7), Kind: meshmon.KindNodeDown, Time: time.Now(),
				ID:   fmt.Sprintf("%s-%d", prefix, i),
				Data: make([]byte, 512),
			}
			want = append(want, msgs[i].ID)
		}
		// As the poller does: the batch again until it is stored (a
		// leader that moves fails a publish; the ids make a repeat once).
		eventually.NoError(t, time.Minute, "publish "+prefix, func() error {
			_, err := pub.PublishBatch(ctx, msgs)
			return err
		})
	}

	publish("before", 300)
	filled := fill(t, dir)
	publish("full", 300)
	eventually.True(t, time.Minute, "hq-3's JetStream off on its full disk", func() bool {
		return !full.Server().JetStreamEnabled()
	})
	publish("during", 300)

	if err := os.Remove(filled); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, time.Minute, "hq-3's JetStream on again", func() bool {
		return full.Server().JetStreamEnabled()
	})
	publish("after", 300)
	for _, p := range peers {
		eventually.NoError(t, time.Minute, p.cfg.Name+"'s replica of EVENTS holds every event", func() error {
			n, err := localEvents(p)
			if err == nil && n != uint64(len(want)) {
				err = fmt.Errorf("%d messages, want %d", n, len(want))
			}
			return err
		})
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
}

// localEvents is how many messages the peer's own replica of EVENTS holds.
func localEvents(p *Peer) (uint64, error) {
	jsz, err := p.Server().Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return 0, err
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == bus.EventsStream {
				return s.State.Msgs, nil
			}
		}
	}
	return 0, errors.New("no replica of EVENTS")
}
