package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// TestTenantAccountsPastJszDefault: the tenant workers find a tenant whose
// account sorts after the 1,024th (Jsz's default page), on a server of
// 1,100 JetStream accounts.
func TestTenantAccountsPastJszDefault(t *testing.T) {
	const n = 1100
	var conf strings.Builder
	fmt.Fprintf(&conf, "listen: 127.0.0.1:-1\njetstream: {store_dir: %q}\naccounts: {\n", t.TempDir())
	for i := range n {
		fmt.Fprintf(&conf, "T%05d: {jetstream: enabled, users: [{user: T%05d, password: p}]}\n", i, i)
	}
	conf.WriteString("}\n")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	last := fmt.Sprintf("T%05d", n-1)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(last, "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.EventsStream, Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "ev.paris.r1.icmp", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if info, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true}); err != nil || len(info.AccountDetails) >= n {
		t.Fatalf("Jsz's default page holds %d accounts (err %v): this test no longer tests the limit", len(info.AccountDetails), err)
	}
	p := &Peer{cfg: Config{Trust: "operator"}}
	if got, _ := p.tenantAccounts(srv); got[last] != last || len(got) != 1 {
		t.Fatalf("tenant accounts %v, want only %s", got, last)
	}
}

// TestWokenAccounts: a tenant is woken when its tenant bucket holds more
// than the account's JWT (bus.WakeCentral's key beside it); the JWT alone,
// another stream's subjects or no bucket wake nothing.
func TestWokenAccounts(t *testing.T) {
	stream := func(name string, subjects uint64) *server.StreamDetail {
		return &server.StreamDetail{Name: name, State: server.StreamState{NumSubjects: int(subjects), Msgs: subjects, LastSeq: subjects}}
	}
	account := func(id, name string, streams ...*server.StreamDetail) *server.AccountDetail {
		ad := &server.AccountDetail{Name: name, Id: id}
		for _, sd := range streams {
			ad.Streams = append(ad.Streams, *sd)
		}
		return ad
	}
	info := &server.JSInfo{AccountDetails: []*server.AccountDetail{
		account("A1", "woken", stream("KV_"+bus.TenantBucket, 2)),
		account("A2", "jwt-only", stream("KV_"+bus.TenantBucket, 1), stream(bus.EventsStream, 9)),
		account("A3", "", stream("KV_"+bus.TenantBucket, 3)),
		account("A4", "none", stream(bus.EventsStream, 5)),
	}}
	got := wokenAccounts(info)
	want := map[string]string{"A1": "woken", "A3": "A3"}
	if len(got) != len(want) || got["A1"] != want["A1"] || got["A3"] != want["A3"] {
		t.Fatalf("woken %v, want %v", got, want)
	}
}
