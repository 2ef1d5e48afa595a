package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func centralConfig(t *testing.T, name string) Config {
	cfg := testConfig(t)
	cfg.Name, cfg.Role, cfg.Site = name, RoleCentral, ""
	cfg.LeafListen, cfg.LeafPassword = freeAddr(t), "central-leaf-secret"
	return cfg
}

func siteConfig(t *testing.T, site string, join bus.JoinInfo) Config {
	cfg := testConfig(t)
	cfg.Name, cfg.Site = site+"-1", site
	cfg.Central, cfg.LeafUser, cfg.LeafPassword = join.Central, join.User, join.Password
	return cfg
}

func peerJS(t *testing.T, p *Peer) jetstream.JetStream {
	t.Helper()
	nc, err := p.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishSite publishes n events of site, numbered from first.
func publishSite(t *testing.T, js jetstream.JetStream, site string, first, n int) {
	t.Helper()
	msgs := make([]meshmon.Message, n)
	for i := range msgs {
		msgs[i] = meshmon.Message{Subject: meshmon.EventSubject(site, "d1", "trap"), ID: fmt.Sprintf("%s-%d", site, first+i), Data: []byte("x")}
	}
	if got, err := bus.NewPublisher(js).PublishBatch(testCtx(t), msgs); err != nil || got != n {
		t.Fatalf("publish at %s: %d of %d, %v", site, got, n, err)
	}
}

// centralCount is how many events of site central's EVENTS holds.
func centralCount(ctx context.Context, js jetstream.JetStream, site string) (uint64, error) {
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(meshmon.EventSubject(site, ">", "")[:len("ev."+site+".>")]))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

func waitCount(t *testing.T, js jetstream.JetStream, site string, want uint64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	checkFor(t, within, func() error {
		n, err := centralCount(testCtx(t), js, site)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("central holds %d events of %s, want %d", n, site, want)
		}
		return nil
	})
	return time.Since(start)
}

// TestCentralSourcesSites: a site that dialled central with the join info
// has its events at central; a site central was not told of does not;
// adding and removing sites works at run time; central catches up after a
// restart from where it was.
func TestCentralSourcesSites(t *testing.T) {
	ctx := testCtx(t)
	ccfg := centralConfig(t, "c1")
	central := startPeer(t, ccfg)
	cjs := peerJS(t, central)
	if err := bus.AddSite(ctx, cjs, "paris", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := bus.AddSite(ctx, cjs, "paris", time.Now()); !errors.Is(err, bus.ErrSiteExists) {
		t.Fatalf("second add: %v, want ErrSiteExists", err)
	}
	join, err := bus.Join(ctx, cjs)
	if err != nil {
		t.Fatal(err)
	}
	if len(join.Central) != 1 || join.Central[0] != "nats-leaf://"+ccfg.LeafListen {
		t.Fatalf("join info %+v", join)
	}
	paris := startPeer(t, siteConfig(t, "paris", join))
	lyon := startPeer(t, siteConfig(t, "lyon", join))
	pjs, ljs := peerJS(t, paris), peerJS(t, lyon)

	publishSite(t, pjs, "paris", 0, 100)
	publishSite(t, ljs, "lyon", 0, 50)
	waitCount(t, cjs, "paris", 100, 20*time.Second)
	if n, _ := centralCount(ctx, cjs, "lyon"); n != 0 {
		t.Fatalf("central holds %d events of lyon, a site it was not told of", n)
	}
	// Sites keep to their own events: nothing of lyon reached paris.
	if s, err := pjs.Stream(ctx, bus.EventsStream); err != nil || s.CachedInfo().State.Msgs != 100 {
		t.Fatalf("paris holds other sites' events: %v", err)
	}

	if err := bus.AddSite(ctx, cjs, "lyon", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cjs, "lyon", 50, 20*time.Second)

	// Central restarts while paris goes on: central resumes where it was.
	central.Close()
	publishSite(t, pjs, "paris", 100, 100)
	central = startPeer(t, ccfg)
	cjs = peerJS(t, central)
	took := waitCount(t, cjs, "paris", 200, 30*time.Second)
	t.Logf("central caught up 100 events %s after its restart", took.Round(time.Millisecond))

	// Removing a site stops sourcing it; what central holds stays.
	if err := bus.RemoveSite(ctx, cjs, "lyon"); err != nil {
		t.Fatal(err)
	}
	if err := bus.RemoveSite(ctx, cjs, "lyon"); !errors.Is(err, bus.ErrSiteNotFound) {
		t.Fatalf("second remove: %v, want ErrSiteNotFound", err)
	}
	publishSite(t, ljs, "lyon", 50, 10)
	publishSite(t, pjs, "paris", 200, 1)
	waitCount(t, cjs, "paris", 201, 20*time.Second)
	if n, _ := centralCount(ctx, cjs, "lyon"); n != 50 {
		t.Fatalf("central holds %d events of lyon after it was removed, want the 50 from before", n)
	}
}
