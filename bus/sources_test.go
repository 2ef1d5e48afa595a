package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/eventually"
)

// centralSources lists the sites each of central's streams sources.
func centralSources(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range []string{EventsStream, MetricsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = sourceSites(s.CachedInfo().Config.Sources)
	}
	return out
}

func wantSources(t *testing.T, ctx context.Context, js jetstream.JetStream, sites ...string) {
	t.Helper()
	for name, have := range centralSources(t, ctx, js) {
		if !slices.Equal(have, sites) {
			t.Fatalf("%s sources %v, want %v", name, have, sites)
		}
	}
}

// startCentral starts one server with central's streams and buckets.
func startCentral(t *testing.T) (context.Context, *testServer, jetstream.JetStream) {
	t.Helper()
	ts := startServer(t, serverOpts(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	_, js := connect(t, ts.srv.ClientURL())
	if err := EnsureCentral(ctx, js, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	return ctx, ts, js
}

// TestEnsureCentralKeepsSources: a central peer that starts while its
// view of the sites bucket lacks a site (a replica still catching up, as
// its own is after a restart) keeps sourcing that site. Only RemoveSite
// stops it. A site added again gets its sources back, should an earlier
// add have stopped between the bucket and the streams.
func TestEnsureCentralKeepsSources(t *testing.T) {
	ctx, _, js := startCentral(t)
	for _, site := range []string{"paris", "lyon"} {
		if err := AddSite(ctx, js, site, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	wantSources(t, ctx, js, "lyon", "paris")

	// The stale view: the bucket without paris.
	kv, err := js.KeyValue(ctx, SitesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "paris"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureCentral(ctx, js, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	wantSources(t, ctx, js, "lyon", "paris")

	// An add that stopped after the bucket: the next add of the site
	// sources it, and says it existed.
	if err := editSources(ctx, js, func(have []string) []string {
		return slices.DeleteFunc(slices.Clone(have), func(s string) bool { return s == "lyon" })
	}); err != nil {
		t.Fatal(err)
	}
	if err := AddSite(ctx, js, "lyon", time.Now()); !errors.Is(err, ErrSiteExists) {
		t.Fatalf("add lyon again: %v, want ErrSiteExists", err)
	}
	wantSources(t, ctx, js, "lyon", "paris")

	if err := RemoveSite(ctx, js, "lyon"); err != nil {
		t.Fatal(err)
	}
	wantSources(t, ctx, js, "paris")
	if err := RemoveSite(ctx, js, "lyon"); !errors.Is(err, ErrSiteNotFound) {
		t.Fatalf("remove lyon again: %v, want ErrSiteNotFound", err)
	}
}

// TestAddSitesConcurrently: sites added at once, each by its own
// connection, are all sourced: no add undoes another's.
func TestAddSitesConcurrently(t *testing.T) {
	ctx, ts, js := startCentral(t)
	var sites []string
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		site := fmt.Sprintf("site%d", i)
		sites = append(sites, site)
		wg.Go(func() {
			c, err := nats.Connect(ts.srv.ClientURL())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cjs, _ := jetstream.New(c)
			errs <- AddSite(ctx, cjs, site, time.Now())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantSources(t, ctx, js, sites...)
}

// TestCentralPeerRestartKeepsSources: a central peer started again after
// sites were added while it was down runs EnsureCentral, as a peer does on
// every start, while its replica of the sites bucket catches up; central's
// streams keep sourcing every site throughout, and every list of the
// sites through it is whole.
func TestCentralPeerRestartKeepsSources(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, js := connect(t, c.srvs[0].ClientURL())
	lim := DefaultStreamLimits()
	lim.Replicas = 3
	eventually.NoError(t, time.Minute, "central's streams and buckets", func() error {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return EnsureCentral(ectx, js, lim)
	})
	c.srvs[2].Shutdown()
	c.srvs[2].WaitForShutdown()
	var sites []string
	for i := range 12 {
		site := fmt.Sprintf("site%02d", i)
		sites = append(sites, site)
		eventually.NoError(t, 30*time.Second, "add "+site, func() error {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := AddSite(actx, js, site, time.Now()); err != nil && !errors.Is(err, ErrSiteExists) {
				return err
			}
			return nil
		})
	}
	c.srvs[2] = c.start(2)
	_, rjs := connect(t, c.srvs[2].ClientURL())
	until := time.Now().Add(5 * time.Second)
	ensured, read := 0, 0
	for time.Now().Before(until) {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if EnsureCentral(ectx, rjs, lim) == nil {
			ensured++
		}
		// A read of the bucket through the restarted peer is whole or an
		// error, never short.
		if listed, err := Sites(ectx, rjs); err == nil && len(listed) != len(sites) {
			t.Fatalf("after %d starts of the restarted peer: it lists %d sites, want %d", ensured, len(listed), len(sites))
		} else if err == nil {
			read++
		}
		cancel()
		for name, have := range centralSources(t, ctx, js) {
			if !slices.Equal(have, sites) {
				t.Fatalf("after %d starts of the restarted peer: %s sources %v, want %v", ensured, name, have, sites)
			}
		}
	}
	if ensured == 0 {
		t.Fatal("EnsureCentral never succeeded on the restarted peer")
	}
	t.Logf("EnsureCentral ran %d times on the restarted peer; every site stayed sourced; %d reads of the sites through it, each whole", ensured, read)
}

// TestStartAfterSiteRemoveKeepsItRemoved: a central peer's start that
// read the sites bucket just before a site rm (the race: the read, then
// the remove, then the start's edit) does not source the removed site
// again, while a listed site it lacks is sourced.
func TestStartAfterSiteRemoveKeepsItRemoved(t *testing.T) {
	ctx, _, js := startCentral(t)
	for _, site := range []string{"paris", "lyon", "nice"} {
		if err := AddSite(ctx, js, site, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveSite(ctx, js, "lyon"); err != nil {
		t.Fatal(err)
	}
	// nice listed but not sourced (an add that stopped between the two).
	if err := editSources(ctx, js, func(have []string) []string {
		return slices.DeleteFunc(slices.Clone(have), func(s string) bool { return s == "nice" })
	}); err != nil {
		t.Fatal(err)
	}
	wantSources(t, ctx, js, "paris")
	// What the start read before the remove: all three, and a site never
	// added at all.
	if err := addListedSources(ctx, js, []string{"lyon", "nice", "paris", "rome"}); err != nil {
		t.Fatal(err)
	}
	wantSources(t, ctx, js, "nice", "paris")
}
