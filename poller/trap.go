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
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// TrapListener receives SNMP v1 and v2c traps, and v2c informs, on one UDP
// socket, and hands each one, converted to a meshmon.Trap, to its handler.
// An inform is acknowledged only when the handler calls the ack it was given,
// which the poller does once the trap's event is committed to its spool.
// SNMPv3 messages are dropped (logged at debug level).
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

// receive decodes one datagram, hands the trap on and answers an inform.
func (l *TrapListener) receive(conn *net.UDPConn, msg []byte, from *net.UDPAddr) {
	v, ok := snmpVersion(msg)
	if !ok {
		l.log.Debug("snmp trap listener: not an snmp message", "from", from.String())
		return
	}
	if v != gosnmp.Version1 && v != gosnmp.Version2c {
		l.log.Debug("snmp trap listener: dropped message of unsupported version", "from", from.String(), "version", v.String())
		return
	}
	pkt, err := l.dec.UnmarshalTrap(msg, false)
	if err != nil {
		l.log.Debug("snmp trap listener: undecodable message", "from", from.String(), "err", err)
		return
	}
	switch pkt.PDUType {
	case gosnmp.Trap, gosnmp.SNMPv2Trap, gosnmp.InformRequest:
	default:
		l.log.Debug("snmp trap listener: not a notification", "from", from.String(), "pdu", pkt.PDUType.String())
		return
	}
	var ack func()
	if pkt.PDUType == gosnmp.InformRequest {
		ack = l.informAck(conn, pkt, from)
	}
	if l.handle == nil {
		if ack != nil {
			ack()
		}
		return
	}
	l.handle(convertTrap(pkt, from.IP), ack)
}

// informAck returns the function that acknowledges an inform: a Response
// PDU with the inform's request id and varbinds (RFC 3416 4.2.7).
func (l *TrapListener) informAck(conn *net.UDPConn, pkt *gosnmp.SnmpPacket, from *net.UDPAddr) func() {
	resp := *pkt
	resp.PDUType = gosnmp.GetResponse
	resp.Error, resp.ErrorIndex = gosnmp.NoError, 0
	out, err := resp.MarshalMsg()
	if err != nil {
		l.log.Warn("snmp trap listener: encode inform acknowledgement", "to", from.String(), "err", err)
		return func() {}
	}
	to := *from
	return func() {
		if _, err := conn.WriteToUDP(out, &to); err != nil && !errors.Is(err, net.ErrClosed) {
			l.log.Warn("snmp trap listener: acknowledge inform", "to", to.String(), "err", err)
		}
	}
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

// convertTrap turns a decoded v1 Trap-PDU or v2c SNMPv2-Trap/Inform into a
// meshmon.Trap. For v2c, sysUpTime.0 and snmpTrapOID.0 become Uptime and
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
	}
	for _, v := range pkt.Variables {
		name := strings.TrimPrefix(v.Name, ".")
		if tr.Version == meshmon.SNMPv2c {
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
		if idx, ok := columnIndex(oidIfIndex, v.OID); ok && idx >= 0 {
			labels["if_index"] = v.Value
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
