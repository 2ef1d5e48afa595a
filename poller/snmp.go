package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/snmpv3"
)

// SNMPResult is what one SNMP poll of a device saw. A failed poll is an
// observation too: OK is false and Reason says why.
type SNMPResult struct {
	OK bool // the agent answered
	// Reason is, when !OK, one short human phrase: "timeout",
	// "authentication failure (wrong v3 auth password?)", "unknown user",
	// "unknown engine", "decryption error (wrong v3 priv password?)",
	// "no such host", "port unreachable (no agent listening)", "cancelled", ...
	Reason string
	// Err is, when !OK, the underlying error. It wraps one of the ErrSNMP*
	// sentinels where one fits.
	Err error

	SysName, SysDescr, SysObjectID string
	SysUpTime                      uint32  // TimeTicks (1/100 s)
	Interfaces                     []IfRow // ordered by ifIndex
	// SystemOnly: the poll read the system group and not the interface
	// table (PollSystem), so Interfaces says nothing of the device's
	// interfaces.
	SystemOnly bool
	// Neighbors is the device's neighbour table, read in the poll's own
	// session (PollNeighbors); nil when the poll did not read it, or when
	// the reading failed (NeighborsErr says why: the poll itself is still
	// good).
	Neighbors    *meshmon.NeighborTable
	NeighborsErr error
	Took         time.Duration
}

// IfRow is one row of ifTable joined with ifXTable.
type IfRow struct {
	Index       int
	Name, Descr string // ifName (empty if the agent has no ifXTable), ifDescr
	AdminStatus int    // ifAdminStatus: 1 up, 2 down, 3 testing
	OperStatus  int    // ifOperStatus: 1 up, 2 down, ... 7 lowerLayerDown
	InOctets    uint64
	OutOctets   uint64
	HC          bool // the octets are the 64-bit ifHCInOctets/ifHCOutOctets
}

// SNMPProber polls one device by SNMP. It owns its gosnmp client and socket,
// which it opens on the first poll and keeps between polls.
//
// An SNMPProber is not safe for concurrent use: one goroutine at a time may
// call Poll and Close (the poller's per-device loop).
type SNMPProber struct {
	// dev is the poller's target's own device (never changed: a changed
	// device is a new target), not a copy: a poller keeps a prober a
	// device.
	dev          *meshmon.Device
	client       *gosnmp.GoSNMP // open only during a poll
	bulkVarbinds int            // varbinds asked for per GETBULK; tests lower it
	// usm is the SNMPv3 engine state (engine id, boots, time and localized
	// keys) learnt by the last good poll, so the next one needs no engine
	// discovery. The client itself is not kept between polls: gosnmp gives
	// every client a 64 KiB receive buffer, which at 10,000 devices would be
	// 640 MiB held for nothing.
	usm gosnmp.SnmpV3SecurityParameters
}

// NewSNMPProber returns a prober for d. It does no I/O: the socket is opened
// by the first Poll. It returns an error wrapping ErrSNMPConfig when d has no
// usable SNMP settings (d.Validate catches all of them earlier).
func NewSNMPProber(d meshmon.Device) (*SNMPProber, error) {
	return newSNMPProber(&d)
}

// newSNMPProber is NewSNMPProber of a device that is not changed while the
// prober lives.
func newSNMPProber(d *meshmon.Device) (*SNMPProber, error) {
	p := &SNMPProber{dev: d, bulkVarbinds: defaultBulkVarbinds}
	if _, err := p.newClient(); err != nil {
		return nil, err
	}
	return p, nil
}

// newClient builds an unconnected gosnmp client from the device settings.
func (p *SNMPProber) newClient() (*gosnmp.GoSNMP, error) {
	d := p.dev
	s := d.SNMP
	if s == nil {
		return nil, fmt.Errorf("%w: device %s has no snmp settings", ErrSNMPConfig, d.Name)
	}
	port := s.PortOrDefault()
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("%w: device %s: port %d out of range", ErrSNMPConfig, d.Name, port)
	}
	c := &gosnmp.GoSNMP{
		Target:    d.Address,
		Port:      uint16(port),
		Transport: "udp",
		Timeout:   d.TimeoutOrDefault(),
		Retries:   d.Retries,
		MaxOids:   gosnmp.MaxOids,
		Context:   context.Background(),
	}
	switch s.Version {
	case meshmon.SNMPv1:
		c.Version = gosnmp.Version1
		c.Community = s.Community
	case meshmon.SNMPv2c:
		c.Version = gosnmp.Version2c
		c.Community = s.Community
	case meshmon.SNMPv3:
		c.Version = gosnmp.Version3
		c.SecurityModel = gosnmp.UserSecurityModel
		c.ContextName = s.ContextName
		usm := &gosnmp.UsmSecurityParameters{UserName: s.User}
		c.MsgFlags = gosnmp.NoAuthNoPriv
		if s.AuthProtocol != "" {
			ap, ok := snmpv3.AuthProtocol(s.AuthProtocol)
			if !ok {
				return nil, fmt.Errorf("%w: device %s: unknown auth protocol %q", ErrSNMPConfig, d.Name, s.AuthProtocol)
			}
			usm.AuthenticationProtocol = ap
			usm.AuthenticationPassphrase = s.AuthPassword
			c.MsgFlags = gosnmp.AuthNoPriv
		}
		if s.PrivProtocol != "" {
			if s.AuthProtocol == "" {
				return nil, fmt.Errorf("%w: device %s: privacy needs an auth protocol", ErrSNMPConfig, d.Name)
			}
			pp, ok := snmpv3.PrivProtocol(s.PrivProtocol)
			if !ok {
				return nil, fmt.Errorf("%w: device %s: unknown priv protocol %q", ErrSNMPConfig, d.Name, s.PrivProtocol)
			}
			usm.PrivacyProtocol = pp
			usm.PrivacyPassphrase = s.PrivPassword
			c.MsgFlags = gosnmp.AuthPriv
		}
		c.SecurityParameters = usm
		if p.usm != nil {
			c.SecurityParameters = p.usm.Copy()
		}
	default:
		return nil, fmt.Errorf("%w: device %s: unknown snmp version %q", ErrSNMPConfig, d.Name, s.Version)
	}
	return c, nil
}

// Close closes the prober's socket. The prober may be polled again after
// Close; it then reconnects.
func (p *SNMPProber) Close() error {
	c := p.client
	if c == nil {
		return nil
	}
	p.client = nil
	var err error
	if c.Version == gosnmp.Version3 {
		err = c.Close()
	} else {
		err = c.Conn.Close()
		c.Conn = nil
		clients.put(c)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close snmp client: %w", err)
	}
	return nil
}

// connect opens a client for one poll. A v1 or v2c client is one of the
// pool's (clientPool) given the device's settings and a new socket; a v3
// client is the device's own, since it carries the engine's state, and
// records what arrives: gosnmp drops the unauthenticated reports that carry
// an agent's reason for refusing a v3 request.
func (p *SNMPProber) connect(ctx context.Context) (*gosnmp.GoSNMP, error) {
	c, err := p.newClient()
	if err != nil {
		return nil, err
	}
	c.Context = ctx
	addr := net.JoinHostPort(c.Target, strconv.Itoa(int(c.Port)))
	if c.Version != gosnmp.Version3 {
		if pc := clients.take(); pc != nil {
			// A connected socket, as gosnmp makes: the kernel passes only
			// the device's datagrams, and its port unreachable.
			d := net.Dialer{Timeout: c.Timeout}
			conn, err := d.DialContext(ctx, "udp", addr)
			if err != nil {
				clients.put(pc)
				return nil, fmt.Errorf("connect %s: %w", addr, err)
			}
			pc.Target, pc.Port, pc.Version, pc.Community = c.Target, c.Port, c.Version, c.Community
			pc.Timeout, pc.Retries, pc.MaxOids, pc.Context = c.Timeout, c.Retries, c.MaxOids, ctx
			pc.Conn = conn
			return pc, nil
		}
	}
	if err := c.Connect(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	if c.Version == gosnmp.Version3 {
		c.Conn = &recordingConn{Conn: c.Conn}
	}
	return c, nil
}

// clients keeps the v1 and v2c clients between polls. gosnmp gives each
// client a 64 KiB receive buffer (and a random request id from
// crypto/rand) when it connects; made afresh for every poll, that was the
// most of a busy poller's garbage, and its collection a fifth of its CPU
// (meshmon bench poll --cpu-profile). A client serves one poll at a time,
// of any device: it gets the device's settings and a socket of its own for
// the poll.
var clients = clientPool{max: 256, idle: time.Minute}

// clientPool is a free list of connected-once gosnmp clients, without
// their sockets. It holds at most max; a client given back beyond that is
// dropped, and so is one not taken for idle: the pool holds about as many
// as were polling at once within the last idle, not as many as ever did
// (64 clients, 4 MiB, the largest part of a 10,000-device poller's heap
// once its first polls were done: meshmon bench poll --heap-profile). It
// starts empty: take returns nil until a client is given back.
type clientPool struct {
	mu   sync.Mutex
	free []pooledClient // the last given back on top; so the oldest first
	max  int
	idle time.Duration
}

type pooledClient struct {
	c    *gosnmp.GoSNMP
	back time.Time // when it was given back
}

func (cp *clientPool) take() *gosnmp.GoSNMP {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := len(cp.free)
	if n == 0 {
		return nil
	}
	c := cp.free[n-1].c
	cp.free[n-1] = pooledClient{}
	cp.free = cp.free[:n-1]
	return c
}

func (cp *clientPool) put(c *gosnmp.GoSNMP) {
	c.Context, c.Community, c.Conn = context.Background(), "", nil
	now := time.Now()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.free) < cp.max {
		cp.free = append(cp.free, pooledClient{c: c, back: now})
	}
	// The bottom of the stack was given back first: drop those idle for
	// long. Each put looks at one at most, so a put costs no more than
	// before; a busy pool is trimmed within a few polls of their idling.
	if len(cp.free) > 1 && now.Sub(cp.free[0].back) > cp.idle {
		cp.free[0] = pooledClient{}
		cp.free = cp.free[1:]
	}
}

// size is how many clients the pool holds.
func (cp *clientPool) size() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.free)
}

// Poll reads the system group and the interface table of the device. It
// never fails: a failure is a result with OK false, a Reason and an Err.
// Cancelling ctx ends the poll promptly with Reason "cancelled"; a ctx
// deadline that ends it counts as "timeout".
//
// After an SNMPv3 agent restarts (new engine boots or engine id) the poll
// rediscovers the engine and tries once more, so a reboot costs no failed
// poll.
func (p *SNMPProber) Poll(ctx context.Context) SNMPResult {
	return p.pollTimed(ctx, pollFull)
}

// PollNeighbors is Poll, then the reading of the device's LLDP and CDP
// neighbours (as ReadNeighbors) in the same session: its socket, and for
// SNMPv3 the engine the poll found, with no client or discovery of its
// own. A failed reading leaves the poll good (SNMPResult.NeighborsErr).
func (p *SNMPProber) PollNeighbors(ctx context.Context) SNMPResult {
	return p.pollTimed(ctx, pollNeighbors)
}

// What a poll reads: the system group only (pollSystem), with the
// interface table (pollFull), and the neighbours too (pollNeighbors).
type pollKind int

const (
	pollSystem pollKind = iota
	pollFull
	pollNeighbors
)

// PollSystem is Poll without the interface table: one GET of the system
// group, which says whether the agent answers and whether it rebooted. A
// poller checks a device it takes over from another member this way first
// (issue 23: a failover checks a third of a site at once), and reads its
// interfaces at the device's own slot in the interval.
func (p *SNMPProber) PollSystem(ctx context.Context) SNMPResult {
	return p.pollTimed(ctx, pollSystem)
}

func (p *SNMPProber) pollTimed(ctx context.Context, kind pollKind) SNMPResult {
	start := time.Now()
	res := p.poll(ctx, kind)
	if !res.OK && ctx.Err() == nil &&
		(errors.Is(res.Err, ErrSNMPNotInTimeWindow) || errors.Is(res.Err, ErrSNMPUnknownEngine)) {
		// poll dropped the client, so this discovers the engine afresh.
		res = p.poll(ctx, kind)
	}
	res.SystemOnly = kind == pollSystem
	res.Took = time.Since(start)
	return res
}

// poll does one attempt: the system group, then (unless kind is
// pollSystem) the interface table, then (pollNeighbors) the neighbours. On
// any failure but the neighbours' it drops the client, so that the next
// attempt starts with a fresh socket and, for v3, a fresh engine discovery.
func (p *SNMPProber) poll(ctx context.Context, kind pollKind) (res SNMPResult) {
	fail := func(err error) SNMPResult {
		if rec, ok := p.connRecorder(); ok {
			if rep := unauthenticatedReport(p.dev.SNMP.User, rec.last); rep != nil {
				err = fmt.Errorf("%w: agent sent an unauthenticated report: %w", rep, err)
			}
		}
		_ = p.Close()
		p.usm = nil // rediscover the engine next time
		reason, err := classifySNMPError(ctx, err)
		return SNMPResult{Reason: reason, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if p.client == nil {
		c, err := p.connect(ctx)
		if err != nil {
			return fail(err)
		}
		p.client = c
	}
	c := p.client
	rec, _ := c.Conn.(*recordingConn)
	if rec != nil {
		rec.last = rec.last[:0]
	}
	// gosnmp takes its context as a field; keep the request's context there
	// only for this poll.
	c.Context = ctx
	defer func() {
		if p.client != nil {
			p.client.Context = context.Background()
		}
	}()

	// gosnmp notices a cancelled context only between retries; closing the
	// socket unblocks a pending read at once.
	conn := c.Conn
	watchDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(watchDone)
		_ = conn.Close()
	})
	defer func() {
		if !stop() {
			<-watchDone
		}
	}()

	if err := p.getSystem(c, &res); err != nil {
		return fail(fmt.Errorf("get system group: %w", err))
	}
	if kind != pollSystem {
		ifs, err := p.walkInterfaces(c)
		if err != nil {
			return fail(fmt.Errorf("walk interfaces: %w", err))
		}
		res.Interfaces = ifs
	}
	if kind == pollNeighbors && ctx.Err() == nil {
		if nt, err := walkNeighbors(c); err != nil {
			res.NeighborsErr = err
		} else {
			res.Neighbors = &nt
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	res.OK = true
	if c.Version == gosnmp.Version3 {
		p.usm = c.SecurityParameters.Copy()
	}
	_ = p.Close()
	return res
}

// recordingConn keeps the last datagram read.
type recordingConn struct {
	net.Conn
	last []byte
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.last = append(c.last[:0], b[:n]...)
	}
	return n, err
}

// connRecorder returns the recorder around the client's socket, if any.
func (p *SNMPProber) connRecorder() (*recordingConn, bool) {
	if p.client == nil || p.client.Version != gosnmp.Version3 {
		return nil, false
	}
	rec, ok := p.client.Conn.(*recordingConn)
	return rec, ok
}

// USM statistics OIDs (RFC 3414) that an agent reports in a Report PDU.
var usmReports = map[string]error{
	"1.3.6.1.6.3.15.1.1.1.0": gosnmp.ErrUnknownSecurityLevel,
	"1.3.6.1.6.3.15.1.1.2.0": gosnmp.ErrNotInTimeWindow,
	"1.3.6.1.6.3.15.1.1.3.0": gosnmp.ErrUnknownUsername,
	"1.3.6.1.6.3.15.1.1.4.0": gosnmp.ErrUnknownEngineID,
	"1.3.6.1.6.3.15.1.1.5.0": gosnmp.ErrWrongDigest,
	"1.3.6.1.6.3.15.1.1.6.0": gosnmp.ErrDecryption,
}

// unauthenticatedReport decodes msg as an SNMPv3 Report PDU sent without
// authentication and returns the gosnmp error that names its reason, or nil.
//
// RFC 3414 has an agent send these reports (wrong digest, unknown user,
// unsupported security level, unknown engine id) at noAuthNoPriv, since it
// cannot authenticate to a user it cannot verify. gosnmp 1.47 discards them
// once the engine is known ("incoming packet is not authentic") and retries
// until its retries are used up, so the poll fails quickly but without the
// reason. The report is trusted only for that reason, never for data.
func unauthenticatedReport(user string, msg []byte) error {
	if len(msg) == 0 {
		return nil
	}
	x := &gosnmp.GoSNMP{
		Version:            gosnmp.Version3,
		SecurityModel:      gosnmp.UserSecurityModel,
		MsgFlags:           gosnmp.NoAuthNoPriv,
		SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: user},
	}
	pkt, err := x.UnmarshalTrap(msg, true)
	if err != nil || pkt.PDUType != gosnmp.Report || len(pkt.Variables) != 1 ||
		pkt.MsgFlags&gosnmp.AuthNoPriv != 0 {
		return nil
	}
	return usmReports[strings.TrimPrefix(pkt.Variables[0].Name, ".")]
}

// responseError is an SNMP error-status in a response.
type responseError struct {
	status gosnmp.SNMPError
	index  uint8
}

func (e *responseError) Error() string {
	return fmt.Sprintf("agent answered with error status %s (index %d)", e.status, e.index)
}

func (e *responseError) Unwrap() error { return ErrSNMPResponse }

// getSystem reads sysDescr, sysObjectID, sysUpTime and sysName in one GET.
// A v1 agent answers noSuchName for the whole request when one object is
// missing, so the missing object is dropped and the rest asked again.
func (p *SNMPProber) getSystem(c *gosnmp.GoSNMP, res *SNMPResult) error {
	oids := []string{oidSysDescr, oidSysObjectID, oidSysUpTime, oidSysName}
	for len(oids) > 0 {
		pkt, err := c.Get(oids)
		if err != nil {
			return err
		}
		if pkt.Error == gosnmp.NoSuchName && c.Version == gosnmp.Version1 &&
			pkt.ErrorIndex >= 1 && int(pkt.ErrorIndex) <= len(oids) {
			oids = slices.Delete(oids, int(pkt.ErrorIndex)-1, int(pkt.ErrorIndex))
			continue
		}
		if pkt.Error != gosnmp.NoError {
			return &responseError{status: pkt.Error, index: pkt.ErrorIndex}
		}
		for _, v := range pkt.Variables {
			switch strings.TrimPrefix(v.Name, ".") {
			case oidSysDescr:
				res.SysDescr = pduString(v)
			case oidSysObjectID:
				res.SysObjectID = pduString(v)
			case oidSysUpTime:
				if v.Type == gosnmp.TimeTicks {
					res.SysUpTime = uint32(toUint64(v.Value))
				}
			case oidSysName:
				res.SysName = pduString(v)
			}
		}
		return nil
	}
	return nil
}

// ifColumn is one column of ifTable or ifXTable that the walk reads.
type ifColumn struct {
	prefix string // column OID, no leading dot
	set    func(r *ifRowBuild, v gosnmp.SnmpPDU)
}

// ifRowBuild collects a row while the columns arrive.
type ifRowBuild struct {
	IfRow
	hcIn, hcOut       uint64
	hasHCIn, hasHCOut bool
}

var ifColumns = []ifColumn{
	{oidIfIndex, func(r *ifRowBuild, v gosnmp.SnmpPDU) {}},
	{oidIfDescr, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.Descr = pduString(v) }},
	{oidIfAdminStatus, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.AdminStatus = int(toInt64(v.Value)) }},
	{oidIfOperStatus, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.OperStatus = int(toInt64(v.Value)) }},
	{oidIfInOctets, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.InOctets = toUint64(v.Value) }},
	{oidIfOutOctets, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.OutOctets = toUint64(v.Value) }},
	{oidIfName, func(r *ifRowBuild, v gosnmp.SnmpPDU) { r.Name = pduString(v) }},
	{oidIfHCInOctets, func(r *ifRowBuild, v gosnmp.SnmpPDU) {
		if v.Type == gosnmp.Counter64 {
			r.hcIn, r.hasHCIn = toUint64(v.Value), true
		}
	}},
	{oidIfHCOutOctets, func(r *ifRowBuild, v gosnmp.SnmpPDU) {
		if v.Type == gosnmp.Counter64 {
			r.hcOut, r.hasHCOut = toUint64(v.Value), true
		}
	}},
}

// Limits of the interface walk.
const (
	defaultBulkVarbinds = 100    // varbinds asked for per GETBULK, spread over the columns
	maxWalkRounds       = 100000 // round trips; a guard against agents that loop
)

// walkInterfaces reads the ifTable and ifXTable columns side by side: each
// GETBULK (GETNEXT for v1) asks for the next rows of every column that has
// not ended yet, so a table of n rows costs about n*columns/bulkVarbinds
// round trips. A column ends where its OIDs leave the column, at
// endOfMibView, or where an agent answers an OID that does not increase.
func (p *SNMPProber) walkInterfaces(c *gosnmp.GoSNMP) ([]IfRow, error) {
	cols := ifColumns
	if c.Version == gosnmp.Version1 {
		// Counter64 does not exist in SNMPv1.
		cols = slices.DeleteFunc(slices.Clone(cols), func(col ifColumn) bool {
			return col.prefix == oidIfHCInOctets || col.prefix == oidIfHCOutOctets
		})
	}
	active := make([]*walkCursor, len(cols))
	for i, col := range cols {
		active[i] = &walkCursor{col: col, last: col.prefix}
	}
	rows := map[int]*ifRowBuild{}
	reps := 0 // 0 until set from the number of active columns
	for round := 0; len(active) > 0; round++ {
		if round >= maxWalkRounds {
			return nil, fmt.Errorf("%w: interface table did not end after %d requests", ErrSNMPResponse, round)
		}
		oids := make([]string, len(active))
		for i, cur := range active {
			oids[i] = cur.last
		}
		var pkt *gosnmp.SnmpPacket
		var err error
		if c.Version == gosnmp.Version1 {
			pkt, err = c.GetNext(oids)
		} else {
			if reps == 0 || reps*len(active) > p.bulkVarbinds {
				reps = max(1, p.bulkVarbinds/len(active))
			}
			pkt, err = c.GetBulk(oids, 0, uint32(reps))
		}
		if err != nil {
			return nil, err
		}
		switch {
		case pkt.Error == gosnmp.NoError:
		case pkt.Error == gosnmp.NoSuchName && c.Version == gosnmp.Version1 &&
			pkt.ErrorIndex >= 1 && int(pkt.ErrorIndex) <= len(active):
			// A v1 agent says noSuchName when a GETNEXT runs off the end
			// of its MIB: that column is done, ask again for the rest.
			active = slices.Delete(active, int(pkt.ErrorIndex)-1, int(pkt.ErrorIndex))
			continue
		case pkt.Error == gosnmp.TooBig && reps > 1:
			reps /= 2
			continue
		default:
			return nil, &responseError{status: pkt.Error, index: pkt.ErrorIndex}
		}
		if len(pkt.Variables) == 0 {
			return nil, fmt.Errorf("%w: empty answer to a table request", ErrSNMPResponse)
		}
		active = takeColumns(active, pkt.Variables, rows)
	}
	return ifRows(rows), nil
}

// walkCursor is where the walk of one column stands.
type walkCursor struct {
	col  ifColumn
	last string // last OID seen in the column, no leading dot
}

// takeColumns puts one answer's variables (the next rows of each active
// column, in turn) into rows and returns the columns that go on.
func takeColumns(active []*walkCursor, vars []gosnmp.SnmpPDU, rows map[int]*ifRowBuild) []*walkCursor {
	done := make([]bool, len(active))
	n := len(active)
	for i, v := range vars {
		j := i % n
		if done[j] {
			continue
		}
		cur := active[j]
		name := strings.TrimPrefix(v.Name, ".")
		idx, inColumn := columnIndex(cur.col.prefix, name)
		if !inColumn || v.Type == gosnmp.EndOfMibView || v.Type == gosnmp.NoSuchObject ||
			v.Type == gosnmp.NoSuchInstance || !oidLess(cur.last, name) {
			done[j] = true
			continue
		}
		cur.last = name
		if idx < 0 {
			continue // not a single-integer index; not an ifTable row
		}
		r := rows[idx]
		if r == nil {
			r = &ifRowBuild{IfRow: IfRow{Index: idx}}
			rows[idx] = r
		}
		cur.col.set(r, v)
	}
	next := active[:0]
	for j, cur := range active {
		if !done[j] {
			next = append(next, cur)
		}
	}
	return next
}

// ifRows is the table's rows in index order, with the 64-bit counters
// where the agent had both.
func ifRows(rows map[int]*ifRowBuild) []IfRow {
	out := make([]IfRow, 0, len(rows))
	for _, r := range rows {
		row := r.IfRow
		if r.hasHCIn && r.hasHCOut {
			row.InOctets, row.OutOctets, row.HC = r.hcIn, r.hcOut, true
		}
		out = append(out, row)
	}
	slices.SortFunc(out, func(a, b IfRow) int { return a.Index - b.Index })
	return out
}

// columnIndex reports whether oid lies in the column and, if its index is a
// single non-negative integer, returns it (else -1).
func columnIndex(prefix, oid string) (int, bool) {
	rest, ok := strings.CutPrefix(oid, prefix+".")
	if !ok || rest == "" {
		return -1, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return -1, true
	}
	return n, true
}

// oidLess reports whether OID a sorts before OID b (lexicographic by
// sub-identifier, as SNMP orders the MIB).
// It runs for every varbind of a walk, so it reads the sub-identifiers in
// place rather than splitting the strings (which made it 5% of a busy
// poller's CPU, with the garbage).
func oidLess(a, b string) bool {
	na, nb := strings.Count(a, ".")+1, strings.Count(b, ".")+1
	ra, rb := a, b
	for i := 0; i < na && i < nb; i++ {
		var sa, sb string
		sa, ra, _ = strings.Cut(ra, ".")
		sb, rb, _ = strings.Cut(rb, ".")
		x, errx := strconv.ParseUint(sa, 10, 64)
		y, erry := strconv.ParseUint(sb, 10, 64)
		if errx != nil || erry != nil {
			return a < b
		}
		if x != y {
			return x < y
		}
	}
	return na < nb
}

// pduString renders a string-like value: OctetString as text, an OID
// without its leading dot.
func pduString(v gosnmp.SnmpPDU) string {
	switch val := v.Value.(type) {
	case []byte:
		return string(val)
	case string:
		if v.Type == gosnmp.ObjectIdentifier {
			return strings.TrimPrefix(val, ".")
		}
		return val
	}
	return ""
}

func toUint64(v any) uint64 {
	if v == nil {
		return 0
	}
	b := gosnmp.ToBigInt(v)
	if b.Sign() < 0 || !b.IsUint64() {
		return 0
	}
	return b.Uint64()
}

func toInt64(v any) int64 {
	if v == nil {
		return 0
	}
	b := gosnmp.ToBigInt(v)
	if !b.IsInt64() {
		return 0
	}
	return b.Int64()
}

// classifySNMPError turns the error of a failed poll into a short reason and
// an error that wraps the matching sentinel.
func classifySNMPError(ctx context.Context, err error) (string, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return "timeout", fmt.Errorf("%w: %w", ErrSNMPTimeout, ctxErr)
		}
		return "cancelled", fmt.Errorf("%w: %w", ErrSNMPCancelled, ctxErr)
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, ErrSNMPConfig):
		return "bad snmp settings", err
	case errors.Is(err, gosnmp.ErrWrongDigest):
		return "authentication failure (wrong v3 auth password?)", fmt.Errorf("%w: %w", ErrSNMPAuth, err)
	case errors.Is(err, gosnmp.ErrUnknownUsername):
		return "unknown user", fmt.Errorf("%w: %w", ErrSNMPUnknownUser, err)
	case errors.Is(err, gosnmp.ErrUnknownEngineID):
		return "unknown engine", fmt.Errorf("%w: %w", ErrSNMPUnknownEngine, err)
	case errors.Is(err, gosnmp.ErrNotInTimeWindow):
		return "not in time window", fmt.Errorf("%w: %w", ErrSNMPNotInTimeWindow, err)
	case errors.Is(err, gosnmp.ErrDecryption):
		return "decryption error (wrong v3 priv password?)", fmt.Errorf("%w: %w", ErrSNMPDecryption, err)
	case errors.Is(err, gosnmp.ErrUnknownSecurityLevel):
		return "unsupported security level", fmt.Errorf("%w: %w", ErrSNMPSecurityLevel, err)
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "no such host", fmt.Errorf("%w: %w", ErrSNMPNoSuchHost, err)
		}
		return "name resolution failed", fmt.Errorf("%w: %w", ErrSNMPNoSuchHost, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "port unreachable (no agent listening)", fmt.Errorf("%w: %w", ErrSNMPRefused, err)
	case errors.Is(err, gosnmp.ErrMaxRetriesExceeded),
		errors.As(err, &netErr) && netErr.Timeout(),
		strings.Contains(err.Error(), "timeout"):
		return "timeout", fmt.Errorf("%w: %w", ErrSNMPTimeout, err)
	case errors.Is(err, ErrSNMPResponse):
		var re *responseError
		if errors.As(err, &re) {
			return "error status " + re.status.String(), err
		}
		return "bad response", err
	}
	return "snmp error", err
}

// CounterDelta returns how much a counter of the given width (32 or 64
// bits) grew from prev to cur, allowing for one wrap. ok is false when the
// delta is not plausible: a value that does not fit the width, an unknown
// width, or a "wrap" that would mean more than half the counter's range
// went by, which is far more likely a counter reset (agent restart,
// interface re-created) than traffic.
func CounterDelta(prev, cur uint64, bits int) (delta uint64, ok bool) {
	var half uint64
	switch bits {
	case 32:
		if prev > 1<<32-1 || cur > 1<<32-1 {
			return 0, false
		}
		half = 1 << 31
		if cur >= prev {
			return cur - prev, true
		}
		delta = cur + 1<<32 - prev
	case 64:
		half = 1 << 63
		if cur >= prev {
			return cur - prev, true
		}
		delta = cur - prev // modulo 2^64: cur + 2^64 - prev
	default:
		return 0, false
	}
	if delta > half {
		return 0, false
	}
	return delta, true
}
