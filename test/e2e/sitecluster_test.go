//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/tenancy"
)

// testSiteCluster (TestClusters/SiteCluster; TestClusters/SiteClusterOperator
// with operator): a site of three clustered peer processes, started fresh
// after central was told of it, gets its events to central; when the link
// of the member that leads the consumer central sources EVENTS through is
// cut, central gets the events published meanwhile over another member's
// link; when the member that leads it then is SIGKILLed, the other two
// carry on and central gets every event published after, exactly once.
//
// On nats-server 2.15.2 a fresh site cluster could lose its first events
// at central: central had 0 or 269 of the first 300 in 3 of about 40 runs
// (docs/mesh.md, Site clusters, has the cause, fixed in 2.15.3). The test
// tells lost from late: central must hold the 300 within a minute; if not,
// it logs central's source and the site's consumer, waits two more minutes
// and says which.
//
// With operator, central trusts an operator, and the site cluster serves
// one tenant.
func testSiteCluster(t *testing.T, operator bool) {
	dir := t.TempDir()
	var curl, token string       // token: the site's join token
	var centralLeaf int          // central's leaf port
	var connect []nats.Option    // for clients, at central and at the site
	var pubConnect []nats.Option // for the site's publishers
	var members []*meshPeer
	for i := range 3 {
		members = append(members, &meshPeer{name: fmt.Sprintf("lab-%d", i+1), client: freePort(t, "tcp"), cluster: freePort(t, "tcp"),
			dir: filepath.Join(dir, fmt.Sprintf("lab-%d", i+1))})
	}
	if operator {
		_, keys, url, lport := startOperatorCentral(t, dir)
		curl, centralLeaf = url, lport
		mustRun(t, "--server", curl, "tenant", "create", "acme", "--keys", keys)
		f := filepath.Join(dir, "lab.token")
		mustRun(t, "--server", curl, "site", "add", "lab", "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		token = strings.TrimSpace(string(b))
		creds := filepath.Join(dir, "admin.creds")
		mustRun(t, "--server", curl, "tenant", "creds", "acme", "--keys", keys, "--role", "admin", "--out", creds)
		connect = []nats.Option{nats.UserCredentials(creds)}
		poller := filepath.Join(dir, "poller.creds")
		mustRun(t, "--server", curl, "tenant", "creds", "acme", "--keys", keys, "--role", "poller", "--site", "lab", "--user", "p1", "--out", poller)
		pubConnect = []nats.Option{nats.UserCredentials(poller), nats.CustomInboxPrefix(tenancy.InboxPrefix("p1"))}
		for _, m := range members {
			m.args = []string{"--log-level", peerLogLevel(), "peer", "run", "--role", "site", "--name", m.name,
				"--listen", "127.0.0.1:" + strconv.Itoa(m.client), "--data-dir", m.dir}
		}
	} else {
		c := &meshPeer{name: "c1", client: freePort(t, "tcp"), leaf: freePort(t, "tcp"), dir: filepath.Join(dir, "c1")}
		c.args = []string{"--log-level", peerLogLevel(), "peer", "run", "--role", "central", "--name", c.name,
			"--listen", "127.0.0.1:" + strconv.Itoa(c.client), "--data-dir", c.dir, "--leaf-listen", "127.0.0.1:" + strconv.Itoa(c.leaf),
			"--leaf-password", meshLeafPassword, "--auth-user", meshUser, "--auth-password", meshPassword}
		c.start(t)
		curl, centralLeaf = c.url(), c.leaf
		out := mustRun(t, "--server", curl, "--user", meshUser, "--password", meshPassword, "site", "add", "lab", "--json")
		var join struct{ Token string }
		if err := json.Unmarshal([]byte(out), &join); err != nil || join.Token == "" {
			t.Fatalf("site add printed %q: %v", out, err)
		}
		token = join.Token
		connect = []nats.Option{nats.UserInfo(meshUser, meshPassword)}
		pubConnect = connect
		for _, m := range members {
			m.args = []string{"--log-level", peerLogLevel(), "peer", "run", "--name", m.name,
				"--listen", "127.0.0.1:" + strconv.Itoa(m.client), "--data-dir", m.dir, "--auth-user", meshUser, "--auth-password", meshPassword}
		}
	}
	// Each member dials central through a proxy of its own, whose link
	// the test cuts: its join token names the proxy.
	site, info, err := bus.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	proxies := map[*meshPeer]*wan.Proxy{}
	for _, m := range members {
		px, err := wan.NewProxy("127.0.0.1:" + strconv.Itoa(centralLeaf))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		proxies[m] = px
		via := info
		via.Central = []string{"nats-leaf://" + px.Addr()}
		f := filepath.Join(dir, m.name+".token")
		if err := os.WriteFile(f, []byte(bus.JoinToken(site, via)), 0o600); err != nil {
			t.Fatal(err)
		}
		m.args = append(m.args, "--join-file", f)
	}
	for i, m := range members {
		m.args = append(m.args, "--cluster-listen", "127.0.0.1:"+strconv.Itoa(m.cluster))
		for j, o := range members {
			// In operator mode each member names one other only (the
			// cluster finds the rest): each makes the streams with one
			// replica, and the members must raise them to three once
			// three are up, as in default mode.
			if o != m && (!operator || (i == 0 && j == 1) || (i > 0 && j == 0)) {
				m.args = append(m.args, "--routes", "nats-route://127.0.0.1:"+strconv.Itoa(o.cluster))
			}
		}
	}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() { m.start(t) })
	}
	wg.Wait()
	if t.Failed() { // a start failed in its goroutine
		t.FailNow()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cnc, err := nats.Connect(curl, connect...)
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	cjs, _ := jetstream.New(cnc)
	// siteJS connects to member m as a client (opts: connect or pubConnect).
	siteJS := func(m *meshPeer, opts ...nats.Option) jetstream.JetStream {
		nc, err := nats.Connect(m.url(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return js
	}
	// publish sends events first..first+n-1 of device to the site through
	// js, each again until the cluster takes it (its streams come a few
	// seconds after the members are up).
	publish := func(js jetstream.JetStream, device string, first, n int) {
		t.Helper()
		for i := first; i < first+n; i++ {
			for {
				_, err := js.Publish(ctx, meshmon.EventSubject("lab", device, "trap"), []byte("x"), jetstream.WithMsgID(device+"-"+strconv.Itoa(i)))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish event %d: %v", i, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// centralHolds waits until central holds want events of device, or
	// at least one when want is 0; it reports whether it did.
	centralHolds := func(device string, want uint64, within time.Duration) (uint64, bool) {
		var n uint64
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			s, err := cjs.Stream(ctx, "EVENTS")
			if err != nil {
				continue
			}
			info, err := s.Info(ctx, jetstream.WithSubjectFilter("ev.lab."+device+".>"))
			if err != nil {
				continue
			}
			n = 0
			for _, c := range info.State.Subjects {
				n += c
			}
			if (want > 0 && n == want) || (want == 0 && n > 0) {
				return n, true
			}
		}
		return n, false
	}

	if operator {
		ajs := siteJS(members[0], connect...)
		eventually.NoError(t, 2*time.Minute, "the tenant's streams raised to three replicas", func() error {
			// Each request bounded: one sent before the cluster has its
			// meta leader goes unanswered.
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			for _, name := range []string{"EVENTS", "METRICS", "KV_pollers"} {
				s, err := ajs.Stream(actx, name)
				if err != nil {
					return err
				}
				if r := s.CachedInfo().Config.Replicas; r != 3 {
					return fmt.Errorf("%s has %d replicas", name, r)
				}
			}
			return nil
		})
	}
	js1 := siteJS(members[0], pubConnect...)
	for i := 0; ; i++ {
		publish(js1, "probe", i, 1)
		if _, ok := centralHolds("probe", 0, 15*time.Second); ok {
			break
		}
		if i == 5 {
			t.Fatal("central has none of six probe events of the site cluster, sent 15 s apart")
		}
		t.Logf("central does not have probe event %d after 15 s; sending another", i)
	}
	publish(js1, "d1", 0, 300)
	published := time.Now()
	if n, ok := centralHolds("d1", 300, time.Minute); !ok {
		diagnose(t, ctx, cjs, members, func(m *meshPeer) jetstream.JetStream { return siteJS(m, connect...) })
		if n2, ok := centralHolds("d1", 300, 2*time.Minute); ok {
			t.Fatalf("LATE: central held %d of the site cluster's 300 events after a minute, all 300 %s after publishing", n, time.Since(published).Round(time.Second))
		} else {
			diagnose(t, ctx, cjs, members, func(m *meshPeer) jetstream.JetStream { return siteJS(m, connect...) })
			t.Fatalf("LOST: central holds %d of the site cluster's 300 events after a minute, %d after three", n, n2)
		}
	}
	t.Logf("central had the site cluster's first 300 events %s after they were published", time.Since(published).Round(time.Millisecond))

	// consumerLeader returns the member leading the EVENTS source
	// consumer, asking at member m.
	consumerLeader := func(m *meshPeer) *meshPeer {
		t.Helper()
		ajs := siteJS(m, connect...)
		var leader string
		var lastErr error
		for end := time.Now().Add(30 * time.Second); leader == "" && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			cons, err := ajs.PushConsumer(ctx, "EVENTS", "central-events")
			if err == nil && cons.CachedInfo().Cluster != nil {
				leader = cons.CachedInfo().Cluster.Leader
			}
			if err == nil && leader == "" {
				err = fmt.Errorf("no leader in %+v", cons.CachedInfo().Cluster)
			}
			lastErr = err
		}
		for _, m := range members {
			if m.name == leader {
				return m
			}
		}
		t.Fatalf("the EVENTS source consumer's leader is %q, not a member (%v)", leader, lastErr)
		return nil
	}

	// Cut (loud) the link of the member leading the EVENTS source
	// consumer: it hands the consumer to a linked member, and central gets
	// what is published meanwhile without the link's return.
	cut := consumerLeader(members[0])
	proxies[cut].Cut(true)
	cutAt := time.Now()
	pjs := js1
	if cut == members[0] {
		pjs = siteJS(members[1], pubConnect...)
	}
	publish(pjs, "d1", 300, 300)
	if n, ok := centralHolds("d1", 600, time.Minute); !ok {
		diagnose(t, ctx, cjs, members, func(m *meshPeer) jetstream.JetStream { return siteJS(m, connect...) })
		t.Fatalf("central holds %d of the site cluster's 600 events with %s's link cut", n, cut.name)
	}
	t.Logf("with %s's link cut, central had the 300 events published meanwhile %s after the cut", cut.name, time.Since(cutAt).Round(time.Millisecond))
	proxies[cut].Cut(false)

	// Cut silently (iptables DROP: the link goes dead without a close)
	// the link of the member leading the EVENTS source consumer now,
	// publish while it has not noticed and once it has, restore the link:
	// central must hold every event, once, nothing lost or held back.
	total := uint64(600)
	if os.Getuid() == 0 || os.Getenv("CI") == "true" {
		silent := consumerLeader(members[0])
		pjs, asker := js1, members[0]
		if silent == members[0] {
			pjs, asker = siteJS(members[1], pubConnect...), members[1]
		}
		anc := siteJS(asker, connect...).Conn() // may ask the members
		restore := dropLink(t, proxies[silent].Addr())
		cutAt := time.Now()
		publish(pjs, "d1", 600, 150)
		// The member sees its link down once its pings go unanswered
		// (15-20 s); it says so on meshmon.link.<site>.state.
		eventually.True(t, time.Minute, silent.name+" to see its silently cut link down", func() bool {
			for _, l := range bus.PeerLinks(ctx, anc, "lab") {
				if l.Peer == silent.name && l.State == bus.LinkDown && l.Since.After(cutAt) {
					return true
				}
			}
			return false
		})
		downAt := time.Now()
		publish(pjs, "d1", 750, 150)
		restore()
		restoredAt := time.Now()
		if n, ok := centralHolds("d1", 900, time.Minute); !ok {
			diagnose(t, ctx, cjs, members, func(m *meshPeer) jetstream.JetStream { return siteJS(m, connect...) })
			t.Fatalf("central holds %d of the site cluster's 900 events after %s's silent cut was restored", n, silent.name)
		}
		t.Logf("%s's link silently cut: it saw it down %s after the cut; central had the 300 events published during the cut %s after the link was restored",
			silent.name, downAt.Sub(cutAt).Round(time.Millisecond), time.Since(restoredAt).Round(time.Millisecond))
		total = 900
	} else {
		t.Log("skipping the silent cut: iptables needs root (set CI=true to make this a failure)")
	}

	// SIGKILL the member leading the EVENTS source consumer.
	killed := consumerLeader(members[0])
	killed.proc.kill()
	var survivor *meshPeer
	for _, m := range members {
		if m != killed {
			survivor = m
			break
		}
	}
	start := time.Now()
	sjs := siteJS(survivor, pubConnect...)
	publish(sjs, "d1", int(total), 1)
	accepted := time.Since(start)
	publish(sjs, "d1", int(total)+1, 299)
	if n, ok := centralHolds("d1", total+300, time.Minute); !ok {
		t.Fatalf("central holds %d of the site cluster's %d events after the SIGKILL", n, total+300)
	}
	t.Logf("after %s's SIGKILL the site took events again after %s, and central had the 300 published after it %s after it",
		killed.name, accepted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// diagnose logs central's view of its EVENTS source and each live member's
// view of the source consumer.
func diagnose(t *testing.T, ctx context.Context, cjs jetstream.JetStream, members []*meshPeer, siteJS func(*meshPeer) jetstream.JetStream) {
	t.Helper()
	if s, err := cjs.Stream(ctx, "EVENTS"); err == nil {
		for _, src := range s.CachedInfo().Sources {
			b, _ := json.Marshal(src)
			t.Logf("central source: %s", b)
		}
		b, _ := json.Marshal(s.CachedInfo().State)
		t.Logf("central state: %s", b)
	}
	for _, m := range members {
		if m.proc == nil || m.proc.killed {
			continue
		}
		c, err := siteJS(m).PushConsumer(ctx, "EVENTS", "central-events")
		if err != nil {
			t.Logf("%s: consumer: %v", m.name, err)
			continue
		}
		b, _ := json.Marshal(c.CachedInfo())
		t.Logf("%s: consumer: %s", m.name, b)
	}
}

// dropLink drops, silently (iptables DROP, both ways), every packet to and
// from addr (127.0.0.1:port), as a link that goes dead without a close;
// the returned function lets them through again.
func dropLink(t *testing.T, addr string) (restore func()) {
	t.Helper()
	ipt := need(t, "iptables")
	_, port, _ := strings.Cut(addr, ":")
	rules := [][]string{
		{"OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", port, "-j", "DROP"},
		{"OUTPUT", "-p", "tcp", "-s", "127.0.0.1", "--sport", port, "-j", "DROP"},
	}
	for _, r := range rules {
		if out, err := exec.Command(ipt, append([]string{"-w", "-I"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables -I %v: %v\n%s", r, err, out)
		}
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			for _, r := range rules {
				if out, err := exec.Command(ipt, append([]string{"-w", "-D"}, r...)...).CombinedOutput(); err != nil {
					t.Errorf("iptables -D %v: %v\n%s", r, err, out)
				}
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
