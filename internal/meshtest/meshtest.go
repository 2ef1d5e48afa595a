// Package meshtest starts meshes of peers in this process for the benches
// and tests: a single site peer, a central cluster, sites on leaf links to
// it through WAN proxies (internal/wan) that can be cut like an outage,
// and a central peer in operator mode. Every peer listens on loopback
// without TLS (peer.Config.Insecure), on ports from internal/freeport or
// the kernel.
package meshtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/internal/freeport"
	"github.com/meshmon/meshmon/internal/wan"
	"github.com/meshmon/meshmon/peer"
	"github.com/meshmon/meshmon/tenancy"
)

// Start starts a peer of cfg and waits until it is started.
func Start(ctx context.Context, cfg peer.Config, log *slog.Logger) (*peer.Peer, error) {
	p, err := peer.New(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Site starts a standalone peer of site, named name, keeping its data in
// dir/peer; syncAlways makes it fsync every write.
func Site(ctx context.Context, dir, name, site string, syncAlways bool) (*peer.Peer, error) {
	cfg := peer.DefaultConfig()
	cfg.Insecure = true
	cfg.Name, cfg.Site, cfg.DataDir, cfg.Listen, cfg.SyncAlways = name, site, filepath.Join(dir, "peer"), "127.0.0.1:0", syncAlways
	return Start(ctx, cfg, nil)
}

// OperatorCentral starts a central peer in operator mode that trusts st's
// operator, named name, keeping its data in dir/central (and its trust
// file in dir); maxStore 0 keeps the default.
func OperatorCentral(ctx context.Context, dir, name string, st *tenancy.Store, maxStore int64) (*peer.Peer, error) {
	trust, err := st.Trust()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(trust, "", "  ")
	if err != nil {
		return nil, err
	}
	trustFile := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(trustFile, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	cfg := peer.DefaultConfig()
	cfg.Insecure = true
	cfg.Role, cfg.Name, cfg.Listen, cfg.DataDir, cfg.Trust = peer.RoleCentral, name, "127.0.0.1:0", filepath.Join(dir, "central"), trustFile
	if maxStore > 0 {
		cfg.MaxStore = maxStore
	}
	return Start(ctx, cfg, nil)
}

// JetStream is a JetStream context over an in-process connection to p,
// and the function that closes it (once, however often it is called).
func JetStream(p *peer.Peer) (jetstream.JetStream, func(), error) {
	nc, err := p.InProcessConn()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, sync.OnceFunc(nc.Close), nil
}

// MeshConfig is a Mesh: a central cluster, and the sites added to it.
type MeshConfig struct {
	Dir     string       // each peer's data in Dir/<peer name>
	Prefix  string       // peer names: <Prefix>c1..., <Prefix><site>
	Central int          // clustered central peers, 3 or more (a leaf URL each)
	Log     *slog.Logger // the peers' log; nil: they log nothing
	// WANDelay is the latency, each way, that the WAN proxies add to every
	// site's link (wan.Proxy.Delay); 0: none but loopback's.
	WANDelay time.Duration
	// Configure, if set, changes central peer i's config before it
	// starts (a test's limits, say).
	Configure func(i int, cfg *peer.Config)
}

// Mesh is a central cluster and sites on leaf links to it, each link
// through a WAN proxy per central peer, all in this process.
type Mesh struct {
	cfg       MeshConfig
	Central   []*peer.Peer
	CentralJS jetstream.JetStream // over an in-process connection to Central[0]
	Sites     []*peer.Peer
	SiteJS    []jetstream.JetStream
	join      bus.JoinInfo
	proxies   []*wan.Proxy
	viaProxy  []string
	closers   []func()
}

// StartMesh starts the central cluster of cfg, waits for its streams, its
// leaf URLs and its sites bucket, and opens a WAN proxy to each central
// peer's leaf port. Central ports are fixed for the run, so a central peer
// can restart on them. On error what was started is closed.
func StartMesh(ctx context.Context, cfg MeshConfig) (_ *Mesh, err error) {
	m := &Mesh{cfg: cfg}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	cfgs, err := centralConfigs(cfg)
	if err != nil {
		return nil, err
	}
	for _, c := range cfgs {
		p, err := Start(ctx, c, cfg.Log)
		if err != nil {
			return nil, err
		}
		m.Central = append(m.Central, p)
		m.closers = append(m.closers, p.Close)
	}
	if err := m.waitCentral(ctx); err != nil {
		return nil, err
	}
	js, closeJS, err := JetStream(m.Central[0])
	if err != nil {
		return nil, err
	}
	m.CentralJS = js
	m.closers = append(m.closers, closeJS)
	if m.join, err = waitJoin(ctx, js, len(cfgs)); err != nil {
		return nil, err
	}
	if err := waitSites(ctx, js); err != nil {
		return nil, err
	}
	for _, u := range m.join.Central {
		px, err := wan.NewProxy(strings.TrimPrefix(u, "nats-leaf://"))
		if err != nil {
			return nil, err
		}
		px.Delay(cfg.WANDelay)
		m.proxies = append(m.proxies, px)
		m.closers = append(m.closers, func() { px.Close() })
		m.viaProxy = append(m.viaProxy, "nats-leaf://"+px.Addr())
	}
	return m, nil
}

// centralConfigs are the configs of cfg.Central clustered central peers,
// on free ports, with one leaf password.
func centralConfigs(cfg MeshConfig) ([]peer.Config, error) {
	if cfg.Central < 3 {
		return nil, fmt.Errorf("meshtest: %d central peers; a cluster needs 3 or more", cfg.Central)
	}
	n := cfg.Central
	ports := make([]string, 2*n)
	for i := range ports {
		var err error
		if ports[i], err = freeport.TCP(); err != nil {
			return nil, err
		}
	}
	password := token() + token()
	cfgs := make([]peer.Config, n)
	for i := range cfgs {
		c := peer.DefaultConfig()
		c.Insecure = true
		c.Role, c.Site, c.Name = peer.RoleCentral, "", fmt.Sprintf("%sc%d", cfg.Prefix, i+1)
		c.Listen, c.DataDir = "127.0.0.1:0", filepath.Join(cfg.Dir, c.Name)
		c.Cluster = peer.Cluster{Listen: ports[i]}
		for j := range n {
			if j != i {
				c.Cluster.Routes = append(c.Cluster.Routes, "nats-route://"+ports[j])
			}
		}
		c.LeafListen, c.LeafPassword = ports[n+i], password
		if cfg.Configure != nil {
			cfg.Configure(i, &c)
		}
		cfgs[i] = c
	}
	return cfgs, nil
}

// waitCentral waits for every central peer's streams.
func (m *Mesh) waitCentral(ctx context.Context) error {
	for _, p := range m.Central {
		select {
		case <-p.StreamsReady():
		case <-time.After(2 * time.Minute):
			return errors.New("central streams not ready after 2 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitJoin waits up to 30 s for n central peers to publish their leaf URLs.
func waitJoin(ctx context.Context, js jetstream.JetStream, n int) (bus.JoinInfo, error) {
	var join bus.JoinInfo
	err := retry(ctx, func() (err error) {
		if join, err = bus.Join(ctx, js); err == nil && len(join.Central) < n {
			err = fmt.Errorf("%d of %d central peers published their leaf URL", len(join.Central), n)
		}
		return err
	})
	if err != nil {
		return join, fmt.Errorf("central peers did not publish their leaf URLs: %w", err)
	}
	return join, nil
}

// waitSites waits up to 30 s until central lists its sites: the sites
// bucket, replicated, may not answer yet when the streams are made, and
// AddSite reads it.
func waitSites(ctx context.Context, js jetstream.JetStream) error {
	if err := retry(ctx, func() error { _, err := bus.Sites(ctx, js); return err }); err != nil {
		return fmt.Errorf("central does not list its sites: %w", err)
	}
	return nil
}

// retry calls f until it succeeds, for up to 30 s or until ctx ends,
// 100 ms apart at first (internal/backoff); it returns f's last error.
func retry(ctx context.Context, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for b := backoff.New(100*time.Millisecond, time.Second); ; {
		err := f()
		if err == nil || !b.Wait(ctx) {
			return err
		}
	}
}

// AddSite adds site name at central and starts its peer, which dials
// central through the WAN proxies.
func (m *Mesh) AddSite(ctx context.Context, name string) (*peer.Peer, jetstream.JetStream, error) {
	if err := bus.AddSite(ctx, m.CentralJS, name, time.Now()); err != nil {
		return nil, nil, err
	}
	cfg := peer.DefaultConfig()
	cfg.Insecure = true
	cfg.Site, cfg.Name, cfg.Listen, cfg.DataDir = name, m.cfg.Prefix+name, "127.0.0.1:0", filepath.Join(m.cfg.Dir, name)
	cfg.Central, cfg.LeafUser, cfg.LeafPassword = m.viaProxy, m.join.User, m.join.Password
	p, err := Start(ctx, cfg, m.cfg.Log)
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, p.Close)
	js, closeJS, err := JetStream(p)
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, closeJS)
	m.Sites, m.SiteJS = append(m.Sites, p), append(m.SiteJS, js)
	return p, js, nil
}

// JoinToken is the join token of site, whose link goes through the WAN
// proxies: what 'meshmon peer run --join' of a site peer in another
// process takes. The site must be added at central (bus.AddSite).
func (m *Mesh) JoinToken(site string) string {
	info := m.join
	info.Central = m.viaProxy
	return bus.JoinToken(site, info)
}

// CutWAN starts (cut) or ends a WAN outage of every site. A silent cut
// loses what the links carry until their ends give up on them, as a link
// that drops packets does; a loud one closes the links at once.
func (m *Mesh) CutWAN(cut, silent bool) {
	for _, px := range m.proxies {
		if silent {
			px.Drop(cut)
		} else {
			px.Cut(cut)
		}
	}
}

// SiteLinks lists the leaf links up from each site (by name, without the
// mesh's prefix) to central's peers, as central's servers list their leaf
// connections, each named by its central peer and connection ID: a site
// in its own process counts too.
func (m *Mesh) SiteLinks() map[string][]string {
	out := map[string][]string{}
	for _, p := range m.Central {
		srv := p.Server()
		if srv == nil {
			continue
		}
		lz, err := srv.Leafz(nil)
		if err != nil {
			continue
		}
		for _, l := range lz.Leafs {
			if site, ok := strings.CutPrefix(l.Name, m.cfg.Prefix); ok {
				out[site] = append(out[site], fmt.Sprintf("%s/%d", srv.Name(), l.ID))
			}
		}
	}
	return out
}

// Close stops every peer and proxy, the last started first.
func (m *Mesh) Close() {
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i]()
	}
	m.closers = nil
}

// token returns 16 random hex characters.
func token() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
