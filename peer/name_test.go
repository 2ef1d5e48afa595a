package peer

import (
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestSiteServerName: a site peer given no name makes one of its site's
// name and a random suffix at its first start, keeps it in its data dir
// and takes it again at the next; each data dir makes its own; a member
// of a site cluster whose store came before keeps its site's name; a
// damaged name file is refused, naming it.
func TestSiteServerName(t *testing.T) {
	made := regexp.MustCompile(`^s1-[a-z2-7]{10}$`)
	dir := t.TempDir()
	name, old, err := siteServerName(dir, "s1", false)
	if err != nil || old || !made.MatchString(name) {
		t.Fatalf("first start: %q, old %v, %v; want s1- and 10 random characters", name, old, err)
	}
	fi, err := os.Stat(filepath.Join(dir, nameFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the name file: %v, %v; want mode 0600", fi, err)
	}
	again, _, err := siteServerName(dir, "s1", false)
	if err != nil || again != name {
		t.Fatalf("second start: %q, %v; want %q again", again, err, name)
	}
	other, _, err := siteServerName(t.TempDir(), "s1", false)
	if err != nil || other == name {
		t.Fatalf("another data dir: %q, %v; want a name of its own", other, err)
	}

	// A store made before: a lone site peer takes a made name (nothing of
	// a lone JetStream server is kept by its name), a cluster member keeps
	// its site's.
	for _, clustered := range []bool{false, true} {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "jetstream"), 0o700); err != nil {
			t.Fatal(err)
		}
		name, old, err := siteServerName(dir, "s1", clustered)
		switch {
		case err != nil:
			t.Fatalf("clustered %v: %v", clustered, err)
		case clustered && (name != "s1" || !old):
			t.Fatalf("a cluster member with a store: %q, old %v; want s1, old", name, old)
		case !clustered && (!made.MatchString(name) || old):
			t.Fatalf("a lone peer with a store: %q, old %v; want a made name", name, old)
		}
		if _, err := os.Stat(filepath.Join(dir, nameFile)); clustered != os.IsNotExist(err) {
			t.Fatalf("clustered %v: the name file: %v", clustered, err)
		}
	}
	// A new cluster member makes one.
	if name, old, err := siteServerName(t.TempDir(), "s1", true); err != nil || old || !made.MatchString(name) {
		t.Fatalf("a new cluster member: %q, old %v, %v; want a made name", name, old, err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, nameFile), []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := siteServerName(bad, "s1", false); err == nil || !strings.Contains(err.Error(), filepath.Join(bad, nameFile)) {
		t.Fatalf("an empty name file: %v; want an error naming it", err)
	}
}

// TestSitePeerMakesItsName: a site peer started with no name runs under
// the one it made, and under the same one after a restart.
func TestSitePeerMakesItsName(t *testing.T) {
	cfg := testConfig(t)
	cfg.Name = ""
	p := startPeer(t, cfg)
	name := p.Config().Name
	if !strings.HasPrefix(name, "hq-") || p.srv.Name() != name {
		t.Fatalf("the peer's name %q, its server's %q; want hq- and a suffix, the same", name, p.srv.Name())
	}
	p.Close()
	p = startPeer(t, cfg)
	if got := p.Config().Name; got != name {
		t.Fatalf("after a restart: %q, want %q", got, name)
	}
}

// TestLinkNotKnockedOffUnderAGuessedName: nats-server replaces a leaf link
// at central when another arrives with the same server name in the same
// account, whoever dials it. A stock nats-server dialling central with
// the tenant's leaf credential under a site's name (the old default
// server name, which every site of the tenant knows) leaves that site's
// link alone, now that a site peer makes its name; under the site's made
// name it takes the link, which shows the attack still works where the
// name is known.
func TestLinkNotKnockedOffUnderAGuessedName(t *testing.T) {
	t.Parallel()
	central := startPeer(t, centralConfig(t, "c1"))
	waitStreamsReady(t, central)
	cjs := peerJS(t, central)
	var join bus.JoinInfo
	var sites []*Peer
	for _, site := range []string{"s1", "s2"} {
		if err := bus.AddSite(testCtx(t), cjs, site, time.Now()); err != nil {
			t.Fatal(err)
		}
		var err error
		if join, err = bus.Join(testCtx(t), cjs); err != nil {
			t.Fatal(err)
		}
		cfg := siteConfig(t, site, join)
		cfg.Name = ""
		sites = append(sites, startPeer(t, cfg))
	}
	victim := sites[1].Config().Name
	// links: central's leaf links, by the server name they dialled with.
	links := func() map[string][]uint64 {
		lz, err := central.Server().Leafz(nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]uint64{}
		for _, l := range lz.Leafs {
			out[l.Name] = append(out[l.Name], l.ID)
		}
		return out
	}
	eventually.True(t, 30*time.Second, "both sites' links at central", func() bool {
		l := links()
		return len(l[sites[0].Config().Name]) == 1 && len(l[victim]) == 1
	})
	link := links()[victim][0]

	rogue := func(name string) {
		u, err := neturl.Parse(join.Central[0])
		if err != nil {
			t.Fatal(err)
		}
		u.User = neturl.UserPassword(join.User, join.Password)
		opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: name,
			Accounts: []*server.Account{server.NewAccount(sites[1].Config().Tenant)}}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*neturl.URL{u}, LocalAccount: sites[1].Config().Tenant}}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(srv.Shutdown)
	}
	rogue("s2")
	// Once central lists the rogue's link it has checked it against the
	// others (nats-server's addLeafNodeConnection), and closed the one it
	// replaces: watched for two seconds, the victim's link stays the same.
	eventually.True(t, 30*time.Second, "the rogue's link under s2 at central", func() bool {
		return slices.ContainsFunc(links()["s2"], func(id uint64) bool { return id != link })
	})
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got := links()[victim]; !slices.Equal(got, []uint64{link}) {
			t.Fatalf("s2's link at central is %v, want %d as before the rogue came: the rogue under the guessed name s2 took it", got, link)
		}
	}

	rogue(victim)
	eventually.True(t, 30*time.Second, "a link under s2's made name other than s2's own", func() bool {
		return slices.ContainsFunc(links()[victim], func(id uint64) bool { return id != link })
	})
	if slices.Contains(links()[victim], link) {
		t.Fatalf("s2's link %d is still at central beside the rogue's under its name: nats-server kept both", link)
	}
}
