package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/eventually"
)

// TestConsumerOnCatchingUpReplica reproduces, on plain nats-server v2.15.3
// servers, why a reader of central's EVENTS stopped short after a central
// peer was replaced (TestMeshFaults, docs/mesh.md, Known limits), and
// checks the reader's rule that avoids it. It is slow (it stores 300,000
// messages three times), so it runs only with MESHMON_CATCHUP_REPRO set.
//
// Four servers; a stream of three replicas holds 300,000 messages; a
// follower is lost for good and removed ($JS.API.SERVER.REMOVE), and the
// fourth server takes its replica and catches up out of band. A consumer
// of one replica made meanwhile may be placed on that server and counts
// as pending only what it has stored so far; it gets the rest only as the
// catch-up stores it. A reader that makes its consumer again until the
// consumer's pending count covers what the leader counted reads everything
// at once.
func TestConsumerOnCatchingUpReplica(t *testing.T) {
	if os.Getenv("MESHMON_CATCHUP_REPRO") == "" {
		t.Skip("set MESHMON_CATCHUP_REPRO=1 to run this reproduction (about a minute)")
	}
	const n = 300000
	dir := t.TempDir()
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)}
	srv := make([]*server.Server, 4)
	for i := range 4 {
		srv[i] = startPlainServer(t, fmt.Sprintf("s%d", i+1), filepath.Join(dir, fmt.Sprint(i)), routes, i)
	}
	var urls []string
	for _, s := range srv {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo("a", "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var st jetstream.Stream
	eventually.NoError(t, time.Minute, "the stream", func() (err error) {
		// A request made before the cluster has a meta leader goes
		// unanswered: each try waits 5 s at most.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err = js.CreateStream(tctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, Replicas: 3})
		return err
	})
	payload := make([]byte, 600)
	for i := 0; i < n; i += 1000 {
		var acks []jetstream.PubAckFuture
		for j := i; j < i+1000; j++ {
			f, err := js.PublishAsync(fmt.Sprintf("ev.wan.d%d.trap", j%50), payload)
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holds := map[string]bool{info.Cluster.Leader: true}
	for _, r := range info.Cluster.Replicas {
		holds[r.Name] = true
	}
	lost, spare := -1, -1
	for i := range 4 {
		name := fmt.Sprintf("s%d", i+1)
		switch {
		case !holds[name]:
			spare = i
		case name != info.Cluster.Leader && lost < 0:
			lost = i
		}
	}
	spareName := fmt.Sprintf("s%d", spare+1)
	srv[lost].Shutdown()
	srv[lost].WaitForShutdown()
	sys, err := nats.Connect(srv[spare].ClientURL(), nats.UserInfo("sys", "sys"))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	eventually.NoError(t, time.Minute, "the lost server's removal", func() error {
		req, _ := json.Marshal(map[string]string{"peer": fmt.Sprintf("s%d", lost+1)})
		m, err := sys.Request("$JS.API.SERVER.REMOVE", req, 5*time.Second)
		if err == nil && strings.Contains(string(m.Data), `"error"`) {
			err = fmt.Errorf("%s", m.Data)
		}
		return err
	})
	removed := time.Now()

	// The server's side: a consumer placed on the spare while it catches
	// up has a prefix pending.
	cfg := jetstream.ConsumerConfig{FilterSubject: "ev.wan.>", AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}
	var short *jetstream.ConsumerInfo
	eventually.NoError(t, time.Minute, "a consumer on "+spareName, func() error {
		c, err := st.CreateConsumer(ctx, cfg)
		if err != nil {
			return err
		}
		ci := c.CachedInfo()
		if ci.Cluster == nil || ci.Cluster.Leader != spareName {
			_ = st.DeleteConsumer(ctx, ci.Name)
			return fmt.Errorf("placed on %v", ci.Cluster)
		}
		short = ci
		return nil
	})
	t.Logf("a consumer on %s, which took the lost server's replica %s before, has %d of %d messages pending",
		spareName, time.Since(removed).Round(time.Millisecond), short.NumPending, n)
	if short.NumPending >= n {
		t.Log("the spare had caught up already: nothing shown (run again)")
	}
	_ = st.DeleteConsumer(ctx, short.Name)

	// The reader's side: it takes a consumer only if its pending count
	// covers the leader's, and reads all without a pause.
	var cons jetstream.Consumer
	tries := 0
	eventually.NoError(t, 2*time.Minute, "a consumer on a server holding every message", func() error {
		c, err := st.CreateConsumer(ctx, cfg)
		if err != nil {
			return err
		}
		tries++
		if ci := c.CachedInfo(); ci.NumPending < n {
			_ = st.DeleteConsumer(ctx, ci.Name)
			return fmt.Errorf("%d of %d pending on %v", ci.NumPending, n, ci.Cluster)
		}
		cons = c
		return nil
	})
	start, got := time.Now(), 0
	for got < n {
		b, err := cons.Fetch(5000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for range b.Messages() {
			k++
		}
		if k == 0 {
			t.Fatalf("the read stopped at %d of %d", got, n)
		}
		got += k
	}
	t.Logf("the reader made %d consumers, then read all %d messages in %s", tries, n, time.Since(start).Round(time.Millisecond))
}

// startPlainServer starts member i of a cluster of plain nats-servers
// listening on routes, with JetStream in account A (user a) and a system
// account (user sys).
func startPlainServer(t *testing.T, name, dir string, routes []string, i int) *server.Server {
	t.Helper()
	var rs []string
	for j, r := range routes {
		if j != i {
			rs = append(rs, fmt.Sprintf("%q", "nats://"+r))
		}
	}
	conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
cluster { name: c, listen: %q, routes: [%s] }
accounts { A { jetstream: enabled, users: [{user: a, password: a}] }, SYS { users: [{user: sys, password: sys}] } }
system_account: SYS
`, name, dir, routes[i], strings.Join(rs, ","))
	f := filepath.Join(t.TempDir(), name+".conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(f)
	if err != nil {
		t.Fatal(err)
	}
	o.NoSigs = true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("%s not ready", name)
	}
	t.Cleanup(s.Shutdown)
	return s
}
