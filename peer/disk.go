package peer

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// A full disk, and how the peer gets over it (nats-server 2.15.3).
//
// When a stream's file store fails a write ("no space left on device"),
// nats-server keeps the error in the store and in the stream for good
// (filestore.go setWriteErr, stream.go setWriteErrLocked): every later
// write to that stream fails, a publish gets no answer at all (the
// client's ack wait runs out), and freeing space changes nothing until
// JetStream is started again. A clustered server shuts its JetStream down
// itself instead (jetstream.go handleOutOfSpace).
//
// So the peer watches its store (watchDisk, below): once a stream reports
// a write error, or JetStream is off without the peer having turned it
// off, it shuts JetStream down (Server.ShutdownJetStream, which keeps the
// store and, in a cluster, the meta group's state) and, at a site peer
// that is not a cluster member (storeAccounts), answers every publish to
// the streams' subjects itself with a JetStream API error: code 10047
// ("insufficient storage resources", meshmon.ErrPeerDiskFull to a poller)
// and a description that says the disk is full. Once the file system has
// room again (resumeFree) it stops answering and starts JetStream again in
// process with the configuration it ran with (Server.EnableJetStream),
// which loads the streams and consumers from the store as at a restart.
//
// A cluster member does the same but refuses nothing: the other members
// keep the streams' replicas and a quorum stores what the full member's
// clients publish (routed to the streams' leaders), so an answer of its
// own would race theirs and could say "disk full" of an event stored.
// Starting a cluster member's JetStream again in process is nats-server's
// own path: a config reload of a server whose JetStream was turned off at
// run time calls restartJetStream (reload.go: "Check to make sure we are
// running JetStream if we think we should be"; jetstream.go), which is
// EnableJetStream with the options' configuration; that starts the meta
// group again from the state ShutdownJetStream kept
// (TestJetStreamClusterDisableVsShutdownJetStreamMetaState), and the
// member's stream replicas catch up from their leaders as after a restart.
// restartJetStream also sets the server's INFO flag for JetStream, which
// the peer cannot reach; the flag goes only into the INFO of routes made
// afterwards, and the statsz that tell the other members whether this one
// runs JetStream keep saying it does (the internal send loop read the flag
// at start and reads it again only after a reload or a change of
// cluster name).

// Disk watch timing.
const (
	// diskPoll is how often the peer looks at its store.
	diskPoll = 250 * time.Millisecond
	// diskRetryEvery paces attempts to start JetStream again.
	diskRetryEvery = 2 * time.Second
	// healthzShare and healthzMaxEvery pace the watch's looks at the
	// server's health (healthEvery).
	healthzShare    = 20
	healthzMaxEvery = 5 * time.Second
)

// healthEvery is how long the disk watch waits, after a look at the
// server's health that took took, before the next while the disk is not
// near full: at least a twentieth of the time spent in it, within
// diskPoll and healthzMaxEvery. A single server's health reads the
// directory of every stream of every account (nats-server's healthz): with
// thousands of tenants a look takes tens of milliseconds (about 260 ms at
// 10,000), and four a second kept about 0.29 of a core busy at 3,000
// tenants, doing nothing else.
func healthEvery(took time.Duration) time.Duration {
	return min(max(diskPoll, healthzShare*took), healthzMaxEvery)
}

// nearFull reports whether the store's file system has less than four
// times the room to resume (resumeFree) left: the disk watch then looks at
// the server's health on every poll, since a full store shows there
// first, as a stream's write error.
func (o diskObs) nearFull() bool { return o.Size > 0 && o.Free < 4*resumeFree(o.Size) }

// storeFullCode is the JetStream API error code of a refused write while
// the store is full: JSStorageResourcesExceededErr, which JetStream itself
// answers when an account's storage is used up.
const storeFullCode = 10047

// diskObs is what the disk watch observes.
type diskObs struct {
	// Enabled: JetStream runs.
	Enabled bool
	// WriteErr is a stream's write error as the server reports it; empty
	// when no stream has one.
	WriteErr string
	// Refusing: the peer shut JetStream down and answers publishes itself.
	Refusing bool
	// Free is what the file system of the store has free for the peer,
	// Size its size, in bytes; Size is 0 when unknown.
	Free, Size int64
	// LastTry is when the peer last started JetStream again; zero for
	// never.
	LastTry time.Time
}

// diskAction is what the disk watch does next.
type diskAction int

const (
	diskKeep   diskAction = iota // nothing to change
	diskRefuse                   // shut JetStream down; refuse publishes
	diskResume                   // stop refusing; start JetStream again
)

func (a diskAction) String() string {
	return [...]string{"keep", "refuse", "resume"}[a]
}

// resumeFree is the room the store's file system needs before the peer
// starts JetStream again: 64 MiB, or a tenth of a smaller file system. A
// margin above the few bytes that freed first keeps the peer from going
// back and forth on a disk that something else keeps filling.
func resumeFree(size int64) int64 { return min(64<<20, size/10) }

// decideDisk is the disk watch's policy, a pure function of what it
// observed and the time.
func decideDisk(o diskObs, now time.Time) diskAction {
	switch {
	case !o.Refusing && (o.WriteErr != "" || !o.Enabled):
		return diskRefuse
	case !o.Refusing:
		return diskKeep
	case o.Size > 0 && o.Free < resumeFree(o.Size):
		return diskKeep
	case !o.LastTry.IsZero() && now.Sub(o.LastTry) < diskRetryEvery:
		return diskKeep
	}
	return diskResume
}

// outOfSpace reports whether the observation is of a full disk, rather
// than of another write error.
func (o diskObs) outOfSpace() bool {
	return strings.Contains(o.WriteErr, "no space left") || (o.Size > 0 && o.Free < resumeFree(o.Size))
}

// watchDisk keeps the peer storing through a full disk (see the top of this
// file), until ctx is done.
func (p *Peer) watchDisk(ctx context.Context) {
	srv := p.Server()
	if srv == nil {
		return
	}
	jsCfg := srv.JetStreamConfig()
	if jsCfg == nil {
		return
	}
	// EnableJetStream puts the store in <StoreDir>/jetstream when both
	// limits are set (the server resolved them at start): hand it the
	// directory it was given then.
	jsCfg.StoreDir = filepath.Dir(jsCfg.StoreDir)
	r := &refusal{p: p}
	defer r.stop()
	w := p.witnessPublishes()
	defer w.stop()
	var lastTry, nextHealth time.Time
	t := time.NewTicker(diskPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		o := observeDisk(srv, p.cfg.StoreDir())
		o.Refusing, o.LastTry = r.on(), lastTry
		if o.Refusing || o.nearFull() || !now.Before(nextHealth) {
			o.WriteErr = writeErr(srv, o)
			nextHealth = now.Add(healthEvery(time.Since(now)))
		}
		switch decideDisk(o, time.Now()) {
		case diskRefuse:
			reason := o.WriteErr
			if reason == "" {
				reason = "the server turned JetStream off"
			}
			refusing := "refusing writes"
			if p.cfg.Cluster.Clustered() {
				refusing = "JetStream off (the other cluster members store)"
			}
			if o.outOfSpace() {
				p.log.Error("store disk full: "+refusing+" until the disk has room again, then storing resumes by itself",
					"dir", p.cfg.StoreDir(), "free", meshmon.ShowSize(o.Free), "needs", meshmon.ShowSize(resumeFree(o.Size)), "err", reason)
			} else {
				p.log.Error("store failed: "+refusing+"; starting JetStream again", "dir", p.cfg.StoreDir(), "err", reason)
			}
			if err := srv.ShutdownJetStream(); err != nil {
				p.log.Error("shut JetStream down", "err", err)
			}
			r.start(o)
			// The publishes the store failed on went unanswered: answer
			// them now rather than leave their clients to time out.
			r.answer(w.since(time.Now().Add(-witnessWindow)))
		case diskResume:
			lastTry = time.Now()
			r.stop()
			c := *jsCfg
			if err := srv.EnableJetStream(&c); err != nil {
				p.log.Error("start JetStream again; JetStream off until the next try", "err", err)
				_ = srv.ShutdownJetStream()
				r.start(o)
				continue
			}
			// Warn, as the error it ends: seen at the level that showed that.
			p.log.Warn("store has room again; storing resumed", "dir", p.cfg.StoreDir(), "free", meshmon.ShowSize(o.Free))
		}
	}
}

// observeDisk reads the state of JetStream and of the store's file system
// (not the server's health: writeErr).
func observeDisk(srv *server.Server, dir string) diskObs {
	o := diskObs{Enabled: srv.JetStreamEnabled()}
	o.Free, o.Size = diskSpace(dir)
	return o
}

// writeErr is the write error of a stream that the server's health
// reports, if any, while JetStream runs.
func writeErr(srv *server.Server, o diskObs) string {
	if !o.Enabled {
		return ""
	}
	h := srv.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range h.Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error") {
			return e.Error
		}
	}
	return ""
}

// refusal answers publishes to the streams' subjects while JetStream is
// down, in each account the peer keeps streams in. Its methods are called
// from the disk watch only.
type refusal struct {
	p *Peer
	// conns has a connection for each of storeAccounts, nil where none
	// could be made.
	conns []*nats.Conn
	// reply is the refusal's answer; nil when not refusing.
	reply []byte
}

func (r *refusal) on() bool { return r.conns != nil }

// start subscribes, in each account, to the streams' subjects and answers
// every publish that asks for an ack with the refusal o describes.
func (r *refusal) start(o diskObs) {
	if r.on() {
		return
	}
	code, desc := storeFullCode, "peer disk full: the store of peer "+r.p.cfg.Name+" has no room left; storing resumes by itself once the disk has room"
	if !o.outOfSpace() {
		code, desc = 10076, "peer store failed: "+o.WriteErr+"; the peer is starting JetStream again"
	}
	reply, _ := json.Marshal(map[string]any{"error": map[string]any{"code": 503, "err_code": code, "description": desc}})
	r.reply = reply
	r.conns = []*nats.Conn{} // on, even where no account could be reached
	for _, dial := range r.p.storeAccounts() {
		nc, err := dial()
		if err != nil {
			r.p.log.Warn("refuse writes: in-process connection", "err", err)
			r.conns = append(r.conns, nil)
			continue
		}
		answer := func(m *nats.Msg) {
			if m.Reply != "" {
				_ = m.Respond(reply)
			}
		}
		var subErr error
		// $JS.API.INFO too: a client that asks whether JetStream is there
		// (bus.Publisher.Probe, a poller kept from publishing by its group)
		// learns why it is not.
		for _, subj := range []string{bus.EventsSubjects, bus.MetricsSubjects, "$JS.API.INFO"} {
			if _, err := nc.Subscribe(subj, answer); err != nil {
				subErr = err
			}
		}
		if subErr == nil {
			subErr = nc.FlushTimeout(2 * time.Second)
		}
		if subErr != nil {
			r.p.log.Warn("refuse writes: subscribe", "err", subErr)
		}
		r.conns = append(r.conns, nc)
	}
}

// answer sends the refusal to each of replies (reply subjects of
// publishes the store left unanswered), through the refusal's connection
// in the account the publish was made in.
func (r *refusal) answer(replies []witnessed) {
	if r.reply == nil {
		return
	}
	for _, w := range replies {
		if w.acc < len(r.conns) && r.conns[w.acc] != nil {
			_ = r.conns[w.acc].Publish(w.reply, r.reply)
		}
	}
	for _, nc := range r.conns {
		if nc != nil {
			_ = nc.FlushTimeout(2 * time.Second)
		}
	}
}

// stop ends the refusal.
func (r *refusal) stop() {
	for _, nc := range r.conns {
		if nc != nil {
			nc.Close()
		}
	}
	r.conns, r.reply = nil, nil
}

// witnessWindow is how far back the publishes answered with the refusal
// when it starts go: the store failed at most a disk poll (and the health
// check's time) before the watch saw it. A publish in that window that was
// stored after all has had its answer already, and the client drops a
// second one; one whose answer is still on its way is sent again by the
// poller and stored once (its message id).
const witnessWindow = 2 * time.Second

// witnessed is a publish's reply subject, the index in storeAccounts of
// the account it was made in, and when the peer saw it.
type witnessed struct {
	reply string
	acc   int
	at    time.Time
}

// witness keeps the reply subjects of the latest publishes to the
// streams' subjects, in each account the peer refuses in: nats-server
// leaves the publish the store fails on without an answer (stream.go:
// "We don't want to respond back to the user"), and with these the
// refusal answers them as it starts instead of leaving the poller to wait
// out its publish timeout.
type witness struct {
	conns []*nats.Conn
	mu    sync.Mutex
	ring  [witnessRing]witnessed
	next  int
}

// witnessRing bounds the publishes kept: at 1,000 events a second with a
// batch's commit the only one asking for an answer, far more than a
// window's.
const witnessRing = 4096

// witnessPublishes starts the witness in each account the peer refuses in
// (none at central or at a cluster member).
func (p *Peer) witnessPublishes() *witness {
	w := &witness{}
	for i, dial := range p.storeAccounts() {
		nc, err := dial()
		if err != nil {
			p.log.Warn("disk watch: in-process connection", "err", err)
			continue
		}
		w.conns = append(w.conns, nc)
		see := func(m *nats.Msg) {
			if m.Reply == "" {
				return
			}
			w.mu.Lock()
			w.ring[w.next%witnessRing] = witnessed{reply: m.Reply, acc: i, at: time.Now()}
			w.next++
			w.mu.Unlock()
		}
		for _, subj := range []string{bus.EventsSubjects, bus.MetricsSubjects} {
			sub, err := nc.Subscribe(subj, see)
			if err != nil {
				p.log.Warn("disk watch: subscribe", "err", err)
				continue
			}
			// A witness that falls behind drops messages, never the
			// publisher's: it only serves a full disk's first answers.
			_ = sub.SetPendingLimits(64<<10, 64<<20)
		}
	}
	return w
}

// since returns the publishes seen at or after t, oldest first.
func (w *witness) since(t time.Time) []witnessed {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []witnessed
	for i := max(0, w.next-witnessRing); i < w.next; i++ {
		if e := w.ring[i%witnessRing]; !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

func (w *witness) stop() {
	for _, nc := range w.conns {
		nc.Close()
	}
}

// storeAccounts returns a dialler of an in-process connection in each
// account the peer keeps its streams in: the tenant's, or in operator mode
// each tenant's (as its upkeep user). It returns none at central: its
// streams source and take no publishes, and a refusal there would draw
// every site's events over its link. Nor at a cluster member: the other
// members store what it is sent (see the top of this file).
func (p *Peer) storeAccounts() []func() (*nats.Conn, error) {
	if p.cfg.Role != RoleSite || p.cfg.Cluster.Clustered() {
		return nil
	}
	if len(p.cfg.Tenants) == 0 {
		if p.cfg.operatorMode() {
			return nil
		}
		return []func() (*nats.Conn, error){func() (*nats.Conn, error) {
			return p.InProcessConn(nats.Name("meshmon-peer-disk"))
		}}
	}
	srv := p.Server()
	var out []func() (*nats.Conn, error)
	for _, t := range p.cfg.Tenants {
		out = append(out, func() (*nats.Conn, error) {
			return t.upkeepConn(srv, p.cfg.Site, "meshmon-peer-disk-"+t.Name)
		})
	}
	return out
}
