package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestListReadOnly: a user who may read streams and create consumers but
// not delete them lists the devices, the pollers and the sites, with no
// error and no wait: the removal of each list's consumer is asked for
// without waiting for an answer (refused here, it is the only permission
// violation), and the consumer expires instead.
func TestListReadOnly(t *testing.T) {
	opts := serverOpts(t, t.TempDir())
	reader := &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.MSG.GET.*",
			"$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.MSG.NEXT.*.*"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
	opts.Users = []*server.User{{Username: "admin", Password: "admin-pass"}, {Username: "noc", Password: "noc-pass", Permissions: reader}}
	ts := startServer(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	admin, err := nats.Connect(ts.srv.ClientURL(), nats.UserInfo("admin", "admin-pass"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	if err := EnsureStreams(ctx, ajs, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	if err := EnsureCentral(ctx, ajs, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	inv, err := OpenInventory(ctx, ajs)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sw1", "sw2", "sw3"} {
		if _, err := inv.Put(ctx, testDevice(name)); err != nil {
			t.Fatal(err)
		}
	}
	changed := testDevice("sw2")
	changed.Interval = 2 * changed.Interval
	rev, err := inv.Put(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.Delete(ctx, "sw3"); err != nil {
		t.Fatal(err)
	}
	if err := AddSite(ctx, ajs, "paris", time.Now()); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var asyncErrs []error
	noc, err := nats.Connect(ts.srv.ClientURL(), nats.UserInfo("noc", "noc-pass"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		defer mu.Unlock()
		asyncErrs = append(asyncErrs, err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer noc.Close()
	njs, _ := jetstream.New(noc)
	ninv, err := OpenInventory(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := ninv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Name != "sw1" || devs[1].Name != "sw2" || devs[1].Interval != changed.Interval || devs[1].Revision != rev {
		t.Fatalf("the NOC listed %+v; want sw1 and sw2 (changed, revision %d)", devs, rev)
	}
	reg, err := OpenRegistry(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := reg.List(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("the NOC listed pollers %v, %v; want none", ps, err)
	}
	sites, err := Sites(ctx, njs)
	if err != nil || len(sites) != 1 || sites[0].Name != "paris" {
		t.Fatalf("the NOC listed sites %v, %v; want paris", sites, err)
	}
	if err := noc.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, err := range asyncErrs {
		if !strings.Contains(err.Error(), `Publish to "$JS.API.CONSUMER.DELETE.`) {
			t.Fatalf("listing as the NOC raised %v", err)
		}
	}
}
