package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/tenancy"
)

// recordedLog keeps the messages a peer logs, with their account.
type recordedLog struct {
	mu   sync.Mutex
	msgs []string // "message account=..."
}

func (r *recordedLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordedLog) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "account" {
			line += " account=" + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, line)
	return nil
}
func (r *recordedLog) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordedLog) WithGroup(string) slog.Handler      { return r }

func (r *recordedLog) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = nil
}

// setAgain reports whether the source watch set a source again in
// account.
func (r *recordedLog) setAgain(account string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.msgs, func(m string) bool {
		return strings.HasPrefix(m, "set sources again: ") && strings.HasSuffix(m, " account="+account)
	})
}

// TestOperatorCentralWatchesSources: a central in operator mode watches
// the sources of each tenant's streams too, acting in the tenant's account
// (with a signing key of its own it adds to the claims it applies): a
// tenant's site cut off silently until central's source backs off is
// nudged or set again as soon as its link returns, and central gets every
// event.
func TestOperatorCentralWatchesSources(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, trustFile := operatorStore(t)
	ccfg := operatorCentralConfig(t, "c1", trustFile)
	rec := &recordedLog{}
	central, err := New(ccfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	if err := central.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(central.Close)
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		t.Fatal(err)
	}
	sys := credsConn(t, central.ClientURL(), sysCreds)

	// The tenant, its central streams and its site hq, as tenant create
	// and site add --tenant make them.
	tn, err := st.CreateTenant("acme", tenancy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if tn, _, err = st.EnsurePollerKey("acme", "hq"); err != nil {
		t.Fatal(err)
	}
	if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
		t.Fatal(err)
	}
	adminCreds, err := st.AdminCreds("acme", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cjs, err := jetstream.New(credsConn(t, central.ClientURL(), adminCreds))
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.WaitJetStream(ctx, cjs); err != nil {
		t.Fatal(err)
	}
	lim := bus.DefaultStreamLimits()
	lim.EventsMaxBytes, lim.MetricsMaxBytes = 256<<20, 64<<20
	lim.EventsDuplicates = time.Second // an event sent again would show
	centralStreamsAndSite(t, ctx, cjs, lim, "hq")
	b, err := st.IssueSite("acme", "hq")
	if err != nil {
		t.Fatal(err)
	}
	_, pollerCreds, err := st.IssueUser("acme", "p1", tenancy.RolePoller, "hq")
	if err != nil {
		t.Fatal(err)
	}
	px, err := wan.NewProxy(ccfg.LeafListen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	scfg := testConfig(t)
	scfg.Name = "hq-1"
	scfg.SiteTrust = &b.Trust
	scfg.Central = []string{"nats-leaf://" + px.Addr()}
	scfg.Tenants = []SiteTenant{{Name: "acme", Account: b.Account, AccountJWT: b.AccountJWT, LeafCreds: string(b.LeafCreds), UpkeepCreds: string(b.UpkeepCreds)}}
	site := startPeer(t, scfg)
	sjs, err := jetstream.New(credsConn(t, site.ClientURL(), pollerCreds))
	if err != nil {
		t.Fatal(err)
	}
	// A fresh site's source can wait out JetStream's back-off (it asked
	// before the site had its streams) unless the watch sets it again.
	publishSite(t, sjs, "hq", 0, 100)
	waitCount(t, cjs, "hq", 100, 90*time.Second)

	// The source stalls: the site's consumer it goes through is gone, so
	// JetStream's own recovery fails and backs off, while the site stays
	// within reach and answers. The watch sets the source again (in vain
	// until the consumer is back).
	unc, err := site.cfg.Tenants[0].upkeepConn(site.Server(), "hq", "test-upkeep")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unc.Close)
	ujs, err := jetstream.New(unc)
	if err != nil {
		t.Fatal(err)
	}
	rec.reset()
	if err := ujs.DeleteConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream)); err != nil {
		t.Fatal(err)
	}
	publishSite(t, sjs, "hq", 100, 1_000)
	eventually.NoError(t, time.Minute, "the source watch to set the tenant's source again", func() error {
		if !rec.setAgain(b.Account) {
			return fmt.Errorf("central's source watch has not set hq's source again in the tenant's account %s", b.Account)
		}
		return nil
	})
	// The consumer back, as the site peer makes it at start: central gets
	// every event, once.
	if err := bus.EnsureSourceConsumers(ctx, ujs, "hq"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cjs, "hq", 1_100, 90*time.Second)
}

// centralStreamsAndSite makes a tenant's central streams and adds site, as
// its admin (cjs), right after the tenant's account was pushed. Central
// applies a pushed account twice (the resolver's JWT, then its claims
// watch's edit without the sites' poller keys, centralclaims.go); while it
// does the account's JetStream may answer nothing for a moment, and
// provision.MakeStreams asks again so. So does this; a try whose answer
// was lost stored the site, so ErrSiteExists is done too.
func centralStreamsAndSite(t *testing.T, ctx context.Context, cjs jetstream.JetStream, lim bus.StreamLimits, site string) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "the tenant's central streams and site "+site, func() error {
		if err := bus.EnsureCentral(ctx, cjs, lim); err != nil {
			return err
		}
		if err := bus.AddSite(ctx, cjs, site, time.Now()); !errors.Is(err, bus.ErrSiteExists) {
			return err
		}
		return nil
	})
}
