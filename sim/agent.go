package sim

import (
	"bytes"
	"errors"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

const (
	// maxRequestSize is each agent's receive buffer. It is per agent, so it
	// is kept small: 4 KiB holds a GET of more than 100 interface OIDs.
	// Larger datagrams are dropped.
	maxRequestSize = 4096
	// maxResponseSize caps a response below the largest UDP payload.
	maxResponseSize = 65000
	// maxBulkVarbinds caps one GETBULK response, whatever it asks for.
	maxBulkVarbinds = 1000
	// maxDelayed caps the requests an agent holds back under SetDelay; more
	// are dropped, as an overloaded device would.
	maxDelayed = 1024
)

// Agent is one simulated SNMP agent at its own address, on its own UDP
// socket or on the socket the Sim's agents share (Config.SharedSocket). Its fault
// methods (Down, SetIfOper, Reboot, SetDelay, SetCounterBase) may be called
// concurrently with serving and with each other.
type Agent struct {
	sim      *Sim
	mib      mibView // what it serves: the Sim's mib and its own neighbour tables
	index    int     // 1-based position in the Sim
	name     string
	bindAddr netip.Addr
	engineID string
	keys     []userKeys // localized USM keys, one per Sim user

	conn *net.UDPConn   // its own socket; nil when it shares the Sim's
	addr netip.AddrPort // set by Start

	down     atomic.Bool
	delay    atomic.Int64 // time.Duration
	answered atomic.Uint64
	delayed  atomic.Int32 // requests waiting out a delay
	// peakDelayed is the most requests that waited out a delay at once.
	peakDelayed atomic.Int32
	salt        atomic.Uint64

	mu     sync.Mutex // guards bootAt, boots, frozen and ifs
	bootAt time.Time
	boots  uint32
	frozen *uint32 // sysUpTime stands at this value, as in a recording
	ifs    []ifState

	done      chan struct{}
	closeOnce sync.Once
	lifeMu    sync.Mutex // guards closed and wg.Add
	closed    bool
	wg        sync.WaitGroup // its reader, and answers held back by SetDelay
}

// ifState is the state of one interface. Octet counters are linear in
// time: base value at a point in time plus rate times elapsed while up.
type ifState struct {
	up              bool
	at              time.Time // when in and out were last set
	in, out         uint64    // octets at `at`
	inRate, outRate uint64    // bytes per second while up
}

// snapshot is an agent's state at one instant, rendered for a response.
type snapshot struct {
	name   string
	index  int
	uptime uint32 // hundredths of a second since boot
	ifs    []ifSnapshot
}

type ifSnapshot struct {
	up      bool
	in, out uint64
}

// Name returns the device name, e.g. "sim-00001".
func (a *Agent) Name() string { return a.name }

// Addr returns the bound address; before Start it is the address the agent
// will bind, with port 0 unless Config.Port is set.
func (a *Agent) Addr() netip.AddrPort {
	if !a.addr.IsValid() {
		return netip.AddrPortFrom(a.bindAddr, uint16(a.sim.cfg.Port))
	}
	return a.addr
}

// Device is the agent as an inventory device: polled by SNMP v2c with
// community at its address and port (see Addr) every interval, each
// request timing out after timeout, with one retry.
func (a *Agent) Device(interval, timeout time.Duration, community string) meshmon.Device {
	ap := a.Addr()
	return meshmon.Device{Name: a.Name(), Address: ap.Addr().String(), Checks: []string{meshmon.CheckSNMP},
		Interval: meshmon.Duration(interval), Timeout: meshmon.Duration(timeout), Retries: 1,
		SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Port: int(ap.Port()), Community: community}}
}

// EngineID returns the agent's SNMPv3 authoritative engine ID.
func (a *Agent) EngineID() string { return a.engineID }

// Answered returns how many responses (including v3 reports) the agent has
// sent. An answer is counted before it leaves, so once a manager holds it,
// it is in the count.
func (a *Agent) Answered() uint64 { return a.answered.Load() }

// Boots returns the SNMPv3 engine boots counter: 1 at start, +1 per Reboot.
func (a *Agent) Boots() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.boots
}

// PeakInFlight is the most requests this agent held at once while it had
// a delay set (SetDelay). A manager that polls it one request at a time,
// as meshmon's poller does, never pushes it above 1.
func (a *Agent) PeakInFlight() int { return int(a.peakDelayed.Load()) }

// IsDown reports whether the agent has been taken down with Down(true).
func (a *Agent) IsDown() bool { return a.down.Load() }

// Uptime returns the time since the agent's last (re)boot by the Sim's clock.
func (a *Agent) Uptime() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sim.now().Sub(a.bootAt)
}

// Close stops the agent and waits for its goroutines. It is idempotent.
// An agent on its own socket closes it (the kernel then answers port
// unreachable); one on the shared socket stays silent from then on.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		a.lifeMu.Lock()
		a.closed = true
		a.lifeMu.Unlock()
		close(a.done)
		if a.conn != nil {
			err = a.conn.Close()
		}
		a.wg.Wait()
	})
	return err
}

func (a *Agent) reset(now time.Time) {
	a.bootAt = now
	for i := range a.ifs {
		a.ifs[i].up = true
		a.ifs[i].at = now
		a.ifs[i].in, a.ifs[i].out = 0, 0
	}
}

// octets returns the counter value at now of a counter that was base at
// `at` and has grown at rate bytes per second since, while up.
func octets(base, rate uint64, at, now time.Time, up bool) uint64 {
	el := now.Sub(at)
	if !up || el <= 0 {
		return base
	}
	hi, lo := bits.Mul64(rate, uint64(el))
	if hi >= uint64(time.Second) { // only after centuries of simulated time
		return base
	}
	q, _ := bits.Div64(hi, lo, uint64(time.Second))
	return base + q
}

// snapshotLocked captures the agent's state; a.mu must be held.
func (a *Agent) snapshotLocked(now time.Time) *snapshot {
	st := &snapshot{name: a.name, index: a.index, ifs: make([]ifSnapshot, len(a.ifs))}
	if el := now.Sub(a.bootAt); el > 0 {
		st.uptime = uint32(el / (10 * time.Millisecond))
	}
	if a.frozen != nil {
		st.uptime = *a.frozen
	}
	for i, f := range a.ifs {
		st.ifs[i] = ifSnapshot{
			up:  f.up,
			in:  octets(f.in, f.inRate, f.at, now, f.up),
			out: octets(f.out, f.outRate, f.at, now, f.up),
		}
	}
	return st
}

func (a *Agent) snapshot() *snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.snapshotLocked(a.sim.now())
}

// serve reads requests from the agent's own socket until it is closed.
func (a *Agent) serve() {
	defer a.wg.Done()
	buf := make([]byte, maxRequestSize)
	for {
		n, from, err := a.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-a.done:
				return
			default:
			}
			a.sim.log.Debug("sim: read", "agent", a.name, "err", err)
			continue
		}
		a.receive(buf, n, from)
	}
}

// receive answers (or drops) one request of n bytes read into buf, which
// the caller reuses once it returns. It may run on several goroutines at
// once (the shared socket's readers).
func (a *Agent) receive(buf []byte, n int, from netip.AddrPort) {
	if n >= len(buf) {
		a.sim.log.Debug("sim: request too large, dropped", "agent", a.name, "from", from)
		return
	}
	if a.down.Load() {
		return
	}
	a.lifeMu.Lock()
	if a.closed {
		a.lifeMu.Unlock()
		return
	}
	a.wg.Add(1)
	a.lifeMu.Unlock()
	if d := time.Duration(a.delay.Load()); d > 0 {
		held := a.delayed.Add(1)
		if held > maxDelayed {
			a.delayed.Add(-1)
			a.wg.Done()
			return
		}
		for peak := a.peakDelayed.Load(); held > peak && !a.peakDelayed.CompareAndSwap(peak, held); peak = a.peakDelayed.Load() {
		}
		go a.respondAfter(d, bytes.Clone(buf[:n]), from)
		return
	}
	defer a.wg.Done()
	a.respond(buf[:n], from)
}

// send sends b to `to` from the agent's address and port.
func (a *Agent) send(b []byte, to netip.AddrPort) error {
	if a.conn == nil {
		return a.sim.shared.writeFrom(b, a.bindAddr, to)
	}
	_, err := a.conn.WriteToUDPAddrPort(b, to)
	return err
}

// respondAfter answers a request after d, unless the agent closes first.
func (a *Agent) respondAfter(d time.Duration, req []byte, from netip.AddrPort) {
	defer a.wg.Done()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		// Released before the answer leaves, so the manager's next request
		// is not counted as overlapping this one.
		a.delayed.Add(-1)
		a.respond(req, from)
	case <-a.done:
		a.delayed.Add(-1)
	}
}

func (a *Agent) respond(req []byte, from netip.AddrPort) {
	out := a.handle(req)
	if out == nil || a.down.Load() {
		return
	}
	// Counted before it leaves: a manager that has the answer in hand must
	// find it counted (counting after the write raced with the reader).
	a.answered.Add(1)
	a.sim.answered.Add(1)
	if err := a.send(out, from); err != nil {
		a.answered.Add(^uint64(0))
		a.sim.answered.Add(^uint64(0))
		a.sim.log.Debug("sim: write", "agent", a.name, "to", from, "err", err)
	}
}

// handle returns the encoded answer to one request, or nil to stay silent.
func (a *Agent) handle(req []byte) []byte {
	version, ok := messageVersion(req)
	if !ok {
		return nil
	}
	switch version {
	case gosnmp.Version1, gosnmp.Version2c:
		if !a.sim.serves(version) {
			return nil
		}
		return a.handleCommunity(req, version)
	case gosnmp.Version3:
		if !a.sim.serves(version) {
			return nil
		}
		return a.handleV3(req)
	}
	return nil
}

func (a *Agent) handleCommunity(req []byte, version gosnmp.SnmpVersion) []byte {
	pkt, err := a.sim.communityDecoder.UnmarshalTrap(req, false)
	if err != nil || pkt.Version != version {
		return nil
	}
	if pkt.Community != a.sim.cfg.Community {
		a.sim.badCommunity.Add(1)
		return nil
	}
	resp, ok := a.process(pkt, version == gosnmp.Version1)
	if !ok {
		return nil
	}
	resp.Version = version
	resp.Community = pkt.Community
	return marshalFitting(resp, pkt, maxResponseSize)
}

// process answers a decoded request PDU. It returns false for PDUs an agent
// ignores (GETBULK in v1, traps, responses).
func (a *Agent) process(req *gosnmp.SnmpPacket, v1 bool) (*gosnmp.SnmpPacket, bool) {
	resp := &gosnmp.SnmpPacket{PDUType: gosnmp.GetResponse, RequestID: req.RequestID}
	m := a.mib
	errorAt := func(status gosnmp.SNMPError, i int) (*gosnmp.SnmpPacket, bool) {
		resp.Error = status
		resp.ErrorIndex = uint8(min(i+1, 255))
		resp.Variables = req.Variables
		return resp, true
	}
	switch req.PDUType {
	case gosnmp.GetRequest:
		st := a.snapshot()
		resp.Variables = make([]gosnmp.SnmpPDU, 0, len(req.Variables))
		for i, vb := range req.Variables {
			oid, okOID := parseOID(vb.Name)
			if okOID {
				if l, found := m.get(oid, v1); found {
					resp.Variables = append(resp.Variables, st.value(l))
					continue
				}
			}
			if v1 {
				return errorAt(gosnmp.NoSuchName, i)
			}
			t := gosnmp.NoSuchObject
			if okOID && knownObject(oid) {
				t = gosnmp.NoSuchInstance
			}
			resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: vb.Name, Type: t})
		}
	case gosnmp.GetNextRequest:
		st := a.snapshot()
		resp.Variables = make([]gosnmp.SnmpPDU, 0, len(req.Variables))
		for i, vb := range req.Variables {
			oid, _ := parseOID(vb.Name)
			if l, found := m.next(oid, v1); found {
				resp.Variables = append(resp.Variables, st.value(l))
				continue
			}
			if v1 {
				return errorAt(gosnmp.NoSuchName, i)
			}
			resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: vb.Name, Type: gosnmp.EndOfMibView})
		}
	case gosnmp.GetBulkRequest:
		if v1 {
			return nil, false
		}
		resp.Variables = a.bulk(req)
	case gosnmp.SetRequest:
		if v1 {
			return errorAt(gosnmp.NoSuchName, 0)
		}
		return errorAt(gosnmp.NotWritable, 0)
	default:
		return nil, false
	}
	return resp, true
}

// bulk answers a GETBULK (RFC 3416 4.2.3).
func (a *Agent) bulk(req *gosnmp.SnmpPacket) []gosnmp.SnmpPDU {
	st := a.snapshot()
	m := a.mib
	nonRep := min(int(req.NonRepeaters), len(req.Variables))
	out := make([]gosnmp.SnmpPDU, 0, min(maxBulkVarbinds, nonRep+int(min(req.MaxRepetitions, 64))*(len(req.Variables)-nonRep)))
	nextOf := func(oid []uint32, name string) (gosnmp.SnmpPDU, []uint32, bool) {
		if l, found := m.next(oid, false); found {
			return st.value(l), l.oid, true
		}
		return gosnmp.SnmpPDU{Name: name, Type: gosnmp.EndOfMibView}, oid, false
	}
	for _, vb := range req.Variables[:nonRep] {
		oid, _ := parseOID(vb.Name)
		pdu, _, _ := nextOf(oid, vb.Name)
		out = append(out, pdu)
	}
	reps := req.Variables[nonRep:]
	if len(reps) == 0 {
		return out
	}
	cur := make([][]uint32, len(reps))
	names := make([]string, len(reps))
	for j, vb := range reps {
		cur[j], _ = parseOID(vb.Name)
		names[j] = vb.Name
	}
	for r := uint32(0); r < req.MaxRepetitions && len(out)+len(reps) <= maxBulkVarbinds; r++ {
		more := false
		for j := range reps {
			pdu, oid, found := nextOf(cur[j], names[j])
			out = append(out, pdu)
			if found {
				cur[j], names[j] = oid, pdu.Name
				more = true
			}
		}
		if !more {
			break
		}
	}
	return out
}

// marshalFitting encodes resp; a GETBULK answer that is too large is cut
// down (RFC 3416 4.2.3 allows fewer repetitions) until it fits in limit.
func marshalFitting(resp, req *gosnmp.SnmpPacket, limit int) []byte {
	for {
		out, err := resp.MarshalMsg()
		if err != nil {
			return nil
		}
		if len(out) <= limit || req.PDUType != gosnmp.GetBulkRequest || len(resp.Variables) <= 1 {
			if len(out) > limit {
				return nil
			}
			return out
		}
		resp.Variables = resp.Variables[:len(resp.Variables)/2]
	}
}
