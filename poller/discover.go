package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshmon/meshmon"
)

// Discovery: an ICMP sweep of a prefix, then SNMP at the addresses that
// answered (at every address when this poller may not ping, or when the
// request says SNMPWithoutPing), trying each credential until one answers,
// then the LLDP and CDP neighbours of each agent that did. Probes are rate
// limited (a probe is one echo request, one SNMP try, or one agent's
// neighbour reading), run discoverWorkers at a time, and end when ctx
// does.

const (
	discoverWorkers = 64
	discoverTimeout = time.Second            // per echo and per SNMP try
	sweepGap        = 100 * time.Millisecond // between the two echoes of an address
	progressEvery   = 500 * time.Millisecond
	// maxCandidateBytes bounds the candidates of one reply, well within
	// NATS's default 1 MiB payload: what 64 workers find in half a second,
	// switches with their neighbours, might not fit one.
	maxCandidateBytes = 256 << 10
)

// discovery is one run: its replies are sent from one goroutine at a
// time.
type discovery struct {
	p     *Poller
	req   meshmon.TaskRequest
	lim   *rate.Limiter
	creds []credential

	mu      sync.Mutex // guards the fields below and calls of send
	send    func(meshmon.TaskReply) error
	sendErr error
	prog    meshmon.TaskProgress
	found   []meshmon.Candidate // not sent yet
	total   int                 // candidates found
}

func (p *Poller) discover(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) (int, error) {
	prefix, err := meshmon.DiscoverPrefix(req.CIDR, req.AllowLarge)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTaskFailed, err)
	}
	r := req.Rate
	if r == 0 {
		r = meshmon.DiscoverDefaultRate
	}
	d := &discovery{p: p, req: req, lim: rate.NewLimiter(rate.Limit(r), min(r, discoverWorkers)), creds: p.credentials(req), send: send}
	addrs := meshmon.DiscoverAddrs(prefix)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := d.reportProgress(ctx)
	alive := addrs
	icmp := map[netip.Addr]bool{}
	if p.icmpDenied == nil {
		alive = d.sweep(ctx, addrs)
		for _, a := range alive {
			icmp[a] = true
		}
	}
	if req.SNMPWithoutPing {
		alive = addrs // the agents behind a filter that drops pings too
	}
	d.identify(ctx, alive, icmp)
	stop()
	if err := ctx.Err(); err != nil {
		return d.total, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sendErr != nil {
		return d.total, d.sendErr
	}
	return d.total, d.flushLocked()
}

// reportProgress sends the progress, and the candidates found since the
// last report, every progressEvery until the returned stop is called;
// stop waits for it.
func (d *discovery) reportProgress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.mu.Lock()
				if err := d.flushLocked(); err != nil && d.sendErr == nil {
					d.sendErr = err
				}
				d.mu.Unlock()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// flushLocked sends the progress and the candidates not sent yet, in as
// many replies as keep each one's candidates within maxCandidateBytes.
func (d *discovery) flushLocked() error {
	prog := d.prog
	batches := splitCandidates(d.found, maxCandidateBytes)
	d.found = nil
	for _, b := range batches {
		if err := d.send(meshmon.TaskReply{Progress: &prog, Candidates: b}); err != nil {
			return err
		}
	}
	return nil
}

// splitCandidates cuts cs into batches of at most limit bytes of JSON each
// (a candidate larger than that goes alone); there is always one batch, maybe
// empty.
func splitCandidates(cs []meshmon.Candidate, limit int) [][]meshmon.Candidate {
	out := [][]meshmon.Candidate{nil}
	size := 0
	for _, c := range cs {
		b, _ := json.Marshal(c) // plain fields: cannot fail
		last := len(out) - 1
		if size+len(b) > limit && len(out[last]) > 0 {
			out, last, size = append(out, nil), last+1, 0
		}
		out[last] = append(out[last], c)
		size += len(b) + 1
	}
	return out
}

func (d *discovery) phase(name string, total int) {
	d.mu.Lock()
	d.prog = meshmon.TaskProgress{Phase: name, Total: total, Found: d.total}
	d.mu.Unlock()
}

func (d *discovery) step(c *meshmon.Candidate) {
	d.mu.Lock()
	d.prog.Done++
	if c != nil {
		d.total++
		d.prog.Found = d.total
		d.found = append(d.found, *c)
	}
	d.mu.Unlock()
}

// each runs fn for every address, discoverWorkers at a time, until ctx
// ends.
func each(ctx context.Context, addrs []netip.Addr, fn func(netip.Addr)) {
	work := make(chan netip.Addr)
	var wg sync.WaitGroup
	for range min(discoverWorkers, len(addrs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				fn(a)
			}
		}()
	}
	defer func() { close(work); wg.Wait() }()
	for _, a := range addrs {
		select {
		case work <- a:
		case <-ctx.Done():
			return
		}
	}
}

// sweep pings every address and returns those that answered, in order.
// Each gets two echo requests sweepGap apart: a lone echo lost on a busy
// machine made a /22 discovery miss a live agent (2 runs in 10).
func (d *discovery) sweep(ctx context.Context, addrs []netip.Addr) []netip.Addr {
	d.phase("icmp", len(addrs))
	pr := NewICMPProber(d.p.cfg.ICMPMode, 2, sweepGap)
	var mu sync.Mutex
	up := map[netip.Addr]bool{}
	each(ctx, addrs, func(a netip.Addr) {
		if d.lim.Wait(ctx) != nil {
			return
		}
		if pr.Ping(ctx, a.String(), discoverTimeout).OK {
			mu.Lock()
			up[a] = true
			mu.Unlock()
		}
		d.step(nil)
	})
	var out []netip.Addr
	for _, a := range addrs {
		if up[a] {
			out = append(out, a)
		}
	}
	return out
}

// identify tries SNMP at each address of alive; a candidate is an address
// that answered SNMP or ICMP.
func (d *discovery) identify(ctx context.Context, alive []netip.Addr, icmp map[netip.Addr]bool) {
	d.phase("snmp", len(alive))
	each(ctx, alive, func(a netip.Addr) {
		c := meshmon.Candidate{Address: a.String(), ICMP: icmp[a]}
		for _, cr := range d.creds {
			if d.lim.Wait(ctx) != nil {
				return
			}
			pr, err := NewSNMPProber(probeDevice(c.Address, cr.snmp, d.req.Port, discoverTimeout))
			if err != nil {
				continue
			}
			got, err := pr.Identify(ctx)
			if err == nil {
				got.ICMP, got.Credential = c.ICMP, cr.ref
				got.Name = meshmon.CandidateName(got)
				got.Neighbors = d.neighbors(ctx, a, cr)
				c = got
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
		if c.SNMP || c.ICMP {
			d.step(&c)
		} else {
			d.step(nil)
		}
	})
}

// neighbors reads the LLDP and CDP neighbours of the agent at a with the
// credential that answered it, as one probe of the rate: a few GETBULKs,
// each of one try and one retry (the agent is known to be there, and a lost
// packet should not lose its links). A failed reading is logged and
// leaves the candidate without neighbours.
func (d *discovery) neighbors(ctx context.Context, a netip.Addr, cr credential) []meshmon.Neighbor {
	if d.lim.Wait(ctx) != nil {
		return nil
	}
	dev := probeDevice(a.String(), cr.snmp, d.req.Port, discoverTimeout)
	dev.Retries = 1
	nt, err := ReadNeighbors(ctx, dev)
	if err != nil {
		if ctx.Err() == nil {
			d.p.log.Warn("discover: read neighbours", "task", d.req.ID, "address", a, "err", err)
		}
		return nil
	}
	return nt.Neighbors
}
