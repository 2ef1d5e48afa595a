package poller

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// TrapListener receives SNMP v1, v2c and v3 traps, and v2c and v3 informs,
// on one UDP socket, and hands each one, converted to a meshmon.Trap, to its
// handler. An inform is acknowledged only when the handler calls the ack it
// was given, which the poller does once the trap's event is committed to its
// spool. SNMPv3 needs users (SetV3): a message of an unknown user, at
// another security level, with a wrong digest or that does not decrypt is
// dropped; for informs the listener is the authoritative engine and answers
// engine discovery. Whatever is not a well-formed notification (undecodable,
// another PDU type, no snmpTrapOID.0) is dropped too. Drops are counted by
// reason (Invalid) and logged at info level at most every 10 seconds.
//
// It decodes with gosnmp but owns its socket rather than using
// gosnmp.TrapListener, which cannot report the port it bound when asked for
// port 0, signals readiness and bind errors on separate paths, and gives up
// waiting for its goroutine after a timeout on Close.
type TrapListener struct {
	addr   string
	log    *slog.Logger
	handle TrapHandler
	dec    *gosnmp.GoSNMP // decoder only; never sends
	usm    *usmEngine     // SNMPv3 users and engine; nil drops v3

	drops       [nDropReasons]atomic.Uint64
	discoveries atomic.Uint64
	lastDropLog atomic.Int64 // unix nanoseconds of the last info line about drops

	mu       sync.Mutex
	conn     *net.UDPConn  // nil until Start
	done     chan struct{} // closed when the read loop has returned
	stopping bool          // Stop was called: read errors are expected
	closed   bool
	stopOnce sync.Once
	closeMu  sync.Once
}

// TrapHandler takes one received trap. It is called from the listener's
// goroutine, one trap at a time, so it must be fast: queue the trap and
// return whether it was kept. ack is nil for traps that need no answer; for
// an inform it sends the acknowledgement, and the handler (or whoever it
// hands the trap to) calls it once the trap is safely stored, from any
// goroutine, before the listener is closed. An inform that is never acked
// is sent again by its sender.
type TrapHandler func(tr meshmon.Trap, ack func()) bool

// trapReadBuffer is the socket receive buffer the listener asks for, so a
// burst of traps waits in the kernel rather than being dropped there. The
// kernel caps it at net.core.rmem_max.
const trapReadBuffer = 4 << 20

// NewTrapListener returns a listener for the UDP address addr (host:port;
// port 0 picks a free port, see Addr). handle is called for every trap (see
// TrapHandler); with a nil handle informs are acknowledged at once. It does
// no I/O; Start binds.
func NewTrapListener(addr string, log *slog.Logger, handle TrapHandler) *TrapListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TrapListener{
		addr:   addr,
		log:    log,
		handle: handle,
		dec:    &gosnmp.GoSNMP{Version: gosnmp.Version2c},
	}
}

// SetV3 makes the listener accept SNMPv3 traps and informs of the users in
// tu (validated here; the error wraps ErrTrapUsers). engineID is the
// listener's snmpEngineID for informs when tu sets none (see
// DefaultTrapEngineID); now is the clock of its snmpEngineTime (nil means
// time.Now). Call it before Start.
func (l *TrapListener) SetV3(tu TrapUsers, engineID string, now func() time.Time) error {
	if now == nil {
		now = time.Now
	}
	e, err := newUSMEngine(tu, engineID, now)
	if err != nil {
		return err
	}
	l.usm = e
	return nil
}

// EngineID returns the listener's SNMPv3 engine ID, or "" without SetV3.
func (l *TrapListener) EngineID() string {
	if l.usm == nil {
		return ""
	}
	return l.usm.engineID
}

// Start binds the address and starts receiving. It returns once the socket
// is bound, or with an error wrapping ErrTrapListen that names the address
// (and, for a port below 1024 refused for lack of privilege, how to get it).
// The listener runs until Stop or Close; ctx bounds only the bind.
func (l *TrapListener) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("%w %s: listener is closed", ErrTrapListen, l.addr)
	}
	if l.conn != nil {
		return fmt.Errorf("%w %s: already started", ErrTrapListen, l.addr)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", l.addr)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE, e.g. 'setcap cap_net_bind_service=+ep meshmon'; or listen on a high port and forward 162 to it)", ErrTrapListen, l.addr, err)
		}
		return fmt.Errorf("%w %s: %w", ErrTrapListen, l.addr, err)
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return fmt.Errorf("%w %s: not a UDP socket", ErrTrapListen, l.addr)
	}
	_ = conn.SetReadBuffer(trapReadBuffer)
	l.conn = conn
	l.done = make(chan struct{})
	go l.run(conn, l.done)
	l.log.Info("snmp trap listener started", "addr", conn.LocalAddr().String())
	return nil
}

// Addr returns the bound address, or nil before Start.
func (l *TrapListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	return l.conn.LocalAddr()
}

// Stop stops receiving and waits until the read loop has handed on its last
// trap; the socket stays open so that acks of informs received so far can
// still be sent. It is idempotent and safe to call concurrently.
func (l *TrapListener) Stop() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.stopping = true
		conn, done := l.conn, l.done
		l.mu.Unlock()
		if conn == nil {
			return
		}
		// A deadline in the past wakes the blocked read.
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
	})
}

// Close stops the listener (see Stop) and closes its socket; acks called
// after it are dropped. It is idempotent and safe to call concurrently.
func (l *TrapListener) Close() error {
	var err error
	l.closeMu.Do(func() {
		l.Stop()
		l.mu.Lock()
		l.closed = true
		conn := l.conn
		l.mu.Unlock()
		if conn == nil {
			return
		}
		if cerr := conn.Close(); cerr != nil {
			err = fmt.Errorf("close trap listener %s: %w", conn.LocalAddr(), cerr)
		}
		l.log.Info("snmp trap listener stopped", "addr", conn.LocalAddr().String())
	})
	return err
}

// run reads datagrams until the socket is closed.
func (l *TrapListener) run(conn *net.UDPConn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 65535)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			l.mu.Lock()
			stopping := l.stopping
			l.mu.Unlock()
			if stopping || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("snmp trap listener read", "err", err)
			continue
		}
		l.receive(conn, buf[:n], from)
	}
}

// receive decodes one datagram, hands the trap on and answers an inform
// (once the handler acks it) or an engine discovery request (at once).
func (l *TrapListener) receive(conn *net.UDPConn, msg []byte, from *net.UDPAddr) {
	// A decoder bug on some input must not take the poller down with the
	// listener: the packet is counted as malformed (FuzzTrapPacket hunts
	// for such inputs, without this guard).
	defer func() {
		if r := recover(); r != nil {
			l.drop(dropMalformed, from, fmt.Errorf("decoder panic: %v", r))
		}
	}()
	d := l.decode(msg, from.IP)
	if d.reply != nil {
		if _, err := conn.WriteToUDP(d.reply, from); err != nil && !errors.Is(err, net.ErrClosed) {
			l.log.Debug("snmp trap listener: send report", "to", from.String(), "err", err)
		}
	}
	if d.reason != dropNone {
		l.drop(d.reason, from, d.err)
		return
	}
	var ack func()
	if d.ack != nil {
		to, out := *from, d.ack
		ack = func() {
			if _, err := conn.WriteToUDP(out, &to); err != nil && !errors.Is(err, net.ErrClosed) {
				l.log.Warn("snmp trap listener: acknowledge inform", "to", to.String(), "err", err)
			}
		}
	}
	if l.handle == nil {
		if ack != nil {
			ack()
		}
		return
	}
	l.handle(d.trap, ack)
}

// decoded is what the listener made of one datagram: a trap (with, for an
// inform, the encoded acknowledgement), or the reason it was dropped; and
// possibly a reply to send at once whatever the outcome (an SNMPv3 report).
type decoded struct {
	trap   meshmon.Trap
	ack    []byte
	reply  []byte
	reason dropReason
	err    error // what the decoder said, for the debug log
}

// decode turns one datagram from the address from into a trap. It does no
// I/O and never fails on any input: what is not a well-formed notification
// of a known version (and, for v3, an authentic message of a configured
// user) comes back with a drop reason. msg may be modified.
func (l *TrapListener) decode(msg []byte, from net.IP) decoded {
	v, ok := snmpVersion(msg)
	if !ok {
		return decoded{reason: dropMalformed}
	}
	var pkt *gosnmp.SnmpPacket
	var v3 v3Result
	switch v {
	case gosnmp.Version1, gosnmp.Version2c:
		var err error
		if pkt, err = l.dec.UnmarshalTrap(msg, false); err != nil {
			return decoded{reason: dropMalformed, err: err}
		}
	case gosnmp.Version3:
		if l.usm == nil {
			return decoded{reason: dropUnknownUser}
		}
		v3 = l.usm.receive(msg)
		if v3.pkt == nil {
			return decoded{reason: v3.reason, reply: v3.reply}
		}
		pkt = v3.pkt
	default:
		return decoded{reason: dropMalformed}
	}
	switch {
	case pkt.PDUType == gosnmp.Trap && pkt.Version == gosnmp.Version1:
		if pkt.GenericTrap < 0 || pkt.GenericTrap > 6 {
			return decoded{reason: dropMalformed}
		}
		if pkt.GenericTrap == 6 && strings.Trim(pkt.Enterprise, ".") == "" {
			return decoded{reason: dropNoTrapOID}
		}
	case (pkt.PDUType == gosnmp.SNMPv2Trap || pkt.PDUType == gosnmp.InformRequest) && pkt.Version != gosnmp.Version1:
		if !hasTrapOID(pkt) {
			return decoded{reason: dropNoTrapOID}
		}
	default:
		return decoded{reason: dropNotNotification}
	}
	d := decoded{trap: convertTrap(pkt, from)}
	if pkt.Version == gosnmp.Version3 {
		d.trap.User = v3.user.cfg.Name
	}
	if pkt.PDUType == gosnmp.InformRequest {
		var err error
		if pkt.Version == gosnmp.Version3 {
			d.ack, err = l.usm.informResponse(pkt, v3.user, v3.keys)
		} else {
			d.ack, err = informResponse(pkt)
		}
		if err != nil {
			// The trap is kept; its sender, unanswered, sends it again.
			l.log.Warn("snmp trap listener: encode inform acknowledgement", "from", from.String(), "err", err)
			d.ack = nil
		}
	}
	return d
}

// hasTrapOID reports whether a v2c or v3 notification carries
// snmpTrapOID.0 with an OID value.
func hasTrapOID(pkt *gosnmp.SnmpPacket) bool {
	for _, v := range pkt.Variables {
		if strings.TrimPrefix(v.Name, ".") == oidSnmpTrapOID {
			return v.Type == gosnmp.ObjectIdentifier && strings.Trim(pduString(v), ".") != ""
		}
	}
	return false
}

// informResponse encodes the acknowledgement of a v2c inform: a Response
// PDU with the inform's request id and varbinds (RFC 3416 4.2.7).
func informResponse(pkt *gosnmp.SnmpPacket) ([]byte, error) {
	resp := *pkt
	resp.PDUType = gosnmp.GetResponse
	resp.Error, resp.ErrorIndex = gosnmp.NoError, 0
	return resp.MarshalMsg()
}

// snmpVersion reads the version field of an SNMP message: the first
// element of the outer SEQUENCE, an INTEGER.
func snmpVersion(msg []byte) (gosnmp.SnmpVersion, bool) {
	if len(msg) < 2 || msg[0] != 0x30 {
		return 0, false
	}
	i := 2
	if msg[1]&0x80 != 0 {
		i += int(msg[1] & 0x7f)
	}
	if len(msg) < i+3 || msg[i] != 0x02 || msg[i+1] != 1 {
		return 0, false
	}
	return gosnmp.SnmpVersion(msg[i+2]), true
}

// convertTrap turns a decoded v1 Trap-PDU or v2c/v3 SNMPv2-Trap/Inform into
// a meshmon.Trap. For v2c and v3, sysUpTime.0 and snmpTrapOID.0 become Uptime and
// OID and are left out of Varbinds.
func convertTrap(pkt *gosnmp.SnmpPacket, from net.IP) meshmon.Trap {
	tr := meshmon.Trap{From: from.String(), Community: pkt.Community}
	if pkt.Version == gosnmp.Version1 {
		tr.Version = meshmon.SNMPv1
		tr.Generic, tr.Specific = pkt.GenericTrap, pkt.SpecificTrap
		tr.Uptime = uint32(pkt.Timestamp)
		tr.OID = v1TrapOID(pkt.Enterprise, pkt.GenericTrap, pkt.SpecificTrap)
	} else {
		tr.Version = meshmon.SNMPv2c
		if pkt.Version == gosnmp.Version3 {
			tr.Version = meshmon.SNMPv3
		}
	}
	for _, v := range pkt.Variables {
		name := strings.TrimPrefix(v.Name, ".")
		if tr.Version != meshmon.SNMPv1 {
			switch name {
			case oidSysUpTime:
				tr.Uptime = uint32(toUint64(v.Value))
				continue
			case oidSnmpTrapOID:
				tr.OID = pduString(v)
				continue
			}
		}
		tr.Varbinds = append(tr.Varbinds, renderVarbind(v))
	}
	tr.Labels = trapLabels(tr)
	return tr
}

// v1TrapOID maps a v1 trap to its SNMPv2 notification OID (RFC 3584
// section 3.1): the generic traps coldStart(0) .. egpNeighborLoss(5) to
// snmpTraps.1 .. .6, an enterpriseSpecific(6) trap to enterprise.0.specific.
func v1TrapOID(enterprise string, generic, specific int) string {
	if generic >= 0 && generic <= 5 {
		return oidSnmpTraps + "." + strconv.Itoa(generic+1)
	}
	return strings.TrimPrefix(enterprise, ".") + ".0." + strconv.Itoa(specific)
}

// trapLabels names a well-known trap and, for linkDown and linkUp, the
// interface it is about.
func trapLabels(tr meshmon.Trap) map[string]string {
	name, ok := wellKnownTraps[tr.OID]
	if !ok {
		return nil
	}
	labels := map[string]string{"trap": name}
	if tr.OID != oidLinkDown && tr.OID != oidLinkUp {
		return labels
	}
	for _, v := range tr.Varbinds {
		// The varbind's value, not its OID's index: the trap's sender
		// says which interface. Anything but a number (a sender may put
		// any text there) names none, and central refuses such an
		// event's interface (meshmon.CheckEvent).
		if idx, ok := columnIndex(oidIfIndex, v.OID); ok && idx >= 0 {
			if n, err := strconv.ParseUint(v.Value, 10, 31); err == nil {
				labels["if_index"] = strconv.FormatUint(n, 10)
			}
			break
		}
	}
	if _, ok := labels["if_index"]; !ok {
		// No ifIndex varbind: take the index of ifAdminStatus or ifOperStatus.
		for _, v := range tr.Varbinds {
			for _, col := range []string{oidIfAdminStatus, oidIfOperStatus, oidIfDescr} {
				if idx, ok := columnIndex(col, v.OID); ok && idx >= 0 {
					labels["if_index"] = strconv.Itoa(idx)
				}
			}
		}
	}
	for _, v := range tr.Varbinds {
		if _, ok := columnIndex(oidIfDescr, v.OID); ok {
			labels["if_descr"] = v.Value
		}
		if _, ok := columnIndex(oidIfName, v.OID); ok {
			labels["if_name"] = v.Value
		}
	}
	return labels
}

// SMI type names of the BER tags.
var berTypeNames = map[gosnmp.Asn1BER]string{
	gosnmp.Integer:          "Integer32",
	gosnmp.OctetString:      "OctetString",
	gosnmp.Null:             "Null",
	gosnmp.ObjectIdentifier: "ObjectIdentifier",
	gosnmp.IPAddress:        "IpAddress",
	gosnmp.Counter32:        "Counter32",
	gosnmp.Gauge32:          "Gauge32",
	gosnmp.TimeTicks:        "TimeTicks",
	gosnmp.Opaque:           "Opaque",
	gosnmp.Counter64:        "Counter64",
	gosnmp.Uinteger32:       "Unsigned32",
	gosnmp.NoSuchObject:     "noSuchObject",
	gosnmp.NoSuchInstance:   "noSuchInstance",
	gosnmp.EndOfMibView:     "endOfMibView",
}

// renderVarbind renders a value as text: an OctetString as text when it is
// printable UTF-8, else as colon-separated hex ("00:1a:2b"); an OID without
// its leading dot; numbers in decimal (TimeTicks in hundredths of a
// second).
func renderVarbind(v gosnmp.SnmpPDU) meshmon.Varbind {
	vb := meshmon.Varbind{OID: strings.TrimPrefix(v.Name, "."), Type: berTypeNames[v.Type]}
	if vb.Type == "" {
		vb.Type = v.Type.String()
	}
	switch v.Type {
	case gosnmp.OctetString, gosnmp.Opaque:
		b, _ := v.Value.([]byte)
		vb.Value = renderOctets(b)
	case gosnmp.ObjectIdentifier:
		vb.Value = pduString(v)
	case gosnmp.IPAddress:
		s, _ := v.Value.(string)
		vb.Value = s
	case gosnmp.Integer:
		vb.Value = strconv.FormatInt(toInt64(v.Value), 10)
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Counter64, gosnmp.Uinteger32:
		vb.Value = strconv.FormatUint(toUint64(v.Value), 10)
	case gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
	default:
		if v.Value != nil {
			vb.Value = fmt.Sprint(v.Value)
		}
	}
	return vb
}

func renderOctets(b []byte) string {
	if printable(b) {
		return string(b)
	}
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// printable reports whether b is UTF-8 text without control characters
// other than tab and line breaks.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}
