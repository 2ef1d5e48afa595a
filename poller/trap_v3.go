package poller

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"
)

// This file is the trap listener's side of SNMPv3's User-based Security
// Model (RFC 3414) as RFC 3412/3414 want it for notification receivers:
// traps are sent by an authoritative sender (keys localized to the
// sender's engine ID, which the message carries); informs are sent to an
// authoritative receiver, this listener, whose engine ID, boots and time
// the sender learns by discovery (a Report PDU).
//
// gosnmp decodes the scoped PDU, but the checks before it are done here:
// gosnmp's table of users reports every failure as one untyped error, and
// it localizes both keys of a user for every new engine ID a message names
// before it checks the digest; for AES (gosnmp's Reeder extension) that is
// a fresh 1 MB password hash per engine ID and an entry in a global cache
// that is never freed, which anyone who knows a user name could drive with
// forged engine IDs. Here only the cheap auth key is localized before the
// digest is checked, and keys are cached only for messages that proved
// authentic.

// usmStats OIDs (RFC 3414 section 5) carried in reports.
const (
	oidUsmStatsNotInTimeWindows = ".1.3.6.1.6.3.15.1.1.2.0"
	oidUsmStatsUnknownEngineIDs = ".1.3.6.1.6.3.15.1.1.4.0"
)

// usmTimeWindow is the USM time window in seconds (RFC 3414 3.2.7).
const usmTimeWindow = 150

// maxUSMKeys bounds the cache of localized keys (one entry per user and
// authentic sender engine).
const maxUSMKeys = 16384

// usmEngine is the listener's USM state: its users, its engine ID, boots
// and start, and the keys localized so far. It is safe for concurrent use.
type usmEngine struct {
	users    map[string]*usmUser
	engineID string
	boots    uint32
	started  time.Time
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]usmKeys // user "\x00" engine ID -> keys

	unknownEngines, notInTimeWindows uint32 // counters sent in reports (guarded by mu)
}

type usmUser struct {
	cfg   TrapUser
	auth  gosnmp.SnmpV3AuthProtocol
	priv  gosnmp.SnmpV3PrivProtocol
	level gosnmp.SnmpV3MsgFlags
}

type usmKeys struct{ auth, priv []byte }

// usmBootsEpoch is where the listener's snmpEngineBoots counts from: the
// boots value is the seconds from it to the listener's start, so it grows
// with every restart without a file to keep it in (RFC 3414 2.2.2 wants it
// to grow; it stays below 2^31-1 until 2088).
var usmBootsEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// newUSMEngine builds the USM state from validated users. It localizes each
// user's keys once, so the 1 MB password hashes are paid at start and not
// on the first trap.
func newUSMEngine(tu TrapUsers, defaultEngineID string, now func() time.Time) (*usmEngine, error) {
	if err := tu.Validate(); err != nil {
		return nil, err
	}
	e := &usmEngine{users: map[string]*usmUser{}, engineID: defaultEngineID, now: now, keys: map[string]usmKeys{}}
	if tu.EngineID != "" {
		e.engineID, _ = parseEngineID(tu.EngineID)
	}
	if len(e.engineID) < 5 || len(e.engineID) > 32 {
		return nil, fmt.Errorf("%w: engine id is %d bytes; RFC 3411 wants 5 to 32", ErrTrapUsers, len(e.engineID))
	}
	e.started = now()
	e.boots = uint32(max(1, min(e.started.Sub(usmBootsEpoch)/time.Second, 1<<31-2)))
	for _, c := range tu.Users {
		u := &usmUser{cfg: c, auth: gosnmp.NoAuth, priv: gosnmp.NoPriv, level: gosnmp.NoAuthNoPriv}
		if c.AuthProtocol != "" {
			u.auth, u.level = authProtocols[c.AuthProtocol], gosnmp.AuthNoPriv
		}
		if c.PrivProtocol != "" {
			u.priv, u.level = privProtocols[c.PrivProtocol], gosnmp.AuthPriv
		}
		e.users[c.Name] = u
		if u.level != gosnmp.NoAuthNoPriv {
			if _, err := u.localize(e.engineID); err != nil {
				return nil, fmt.Errorf("%w: user %s: %w", ErrTrapUsers, c.Name, err)
			}
		}
	}
	return e, nil
}

// clock returns the listener's snmpEngineBoots and snmpEngineTime.
func (e *usmEngine) clock() (boots, etime uint32) {
	el := e.now().Sub(e.started) / time.Second
	return e.boots, uint32(max(0, min(el, 1<<31-1)))
}

// authKey localizes the user's auth key to engineID: one hash, since
// gosnmp caches the password-to-key step per pass phrase.
func (u *usmUser) authKey(engineID string) ([]byte, error) {
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    engineID,
		UserName:                 u.cfg.Name,
		AuthenticationProtocol:   u.auth,
		AuthenticationPassphrase: u.cfg.AuthPassword,
		PrivacyProtocol:          gosnmp.NoPriv,
	}
	if err := sp.InitSecurityKeys(); err != nil {
		return nil, err
	}
	return sp.SecretKey, nil
}

// localize derives both keys for engineID.
func (u *usmUser) localize(engineID string) (usmKeys, error) {
	auth, err := u.authKey(engineID)
	if err != nil {
		return usmKeys{}, err
	}
	k := usmKeys{auth: auth}
	if u.level != gosnmp.AuthPriv {
		return k, nil
	}
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    engineID,
		UserName:                 u.cfg.Name,
		AuthenticationProtocol:   u.auth,
		AuthenticationPassphrase: u.cfg.AuthPassword,
		PrivacyProtocol:          u.priv,
		PrivacyPassphrase:        u.cfg.PrivPassword,
		SecretKey:                auth,
	}
	if err := sp.InitSecurityKeys(); err != nil {
		return usmKeys{}, err
	}
	k.priv = sp.PrivacyKey
	return k, nil
}

// v3Result is what the USM side made of one message: a decoded
// notification, or a drop reason, and possibly a reply to send at once
// (a report) whatever the outcome.
type v3Result struct {
	pkt    *gosnmp.SnmpPacket
	user   *usmUser
	keys   usmKeys
	reply  []byte
	reason dropReason
}

// receive runs the USM checks on msg (an SNMPv3 message; it may be
// modified) and decodes it.
func (e *usmEngine) receive(msg []byte) v3Result {
	h, err := parseUSMHeader(msg)
	if err != nil || h.secModel != int64(gosnmp.UserSecurityModel) {
		return v3Result{reason: dropMalformed}
	}
	level := h.flags & gosnmp.AuthPriv
	if level == gosnmp.AuthPriv&^gosnmp.AuthNoPriv { // privacy without authentication
		return v3Result{reason: dropMalformed}
	}
	reportable := h.flags&gosnmp.Reportable != 0
	if h.user == "" && h.engineID == "" && level == gosnmp.NoAuthNoPriv && reportable {
		return e.discovery(msg, &h)
	}
	u := e.users[h.user]
	if u == nil {
		return v3Result{reason: dropUnknownUser}
	}
	if level != u.level {
		return v3Result{reason: dropBadLevel}
	}
	keys, err := e.keysFor(u, msg, &h)
	if err != nil {
		return v3Result{reason: dropBadAuth}
	}
	dec := &gosnmp.GoSNMP{
		Version:       gosnmp.Version3,
		SecurityModel: gosnmp.UserSecurityModel,
		MsgFlags:      level,
		SecurityParameters: &gosnmp.UsmSecurityParameters{
			AuthoritativeEngineID:  h.engineID,
			UserName:               u.cfg.Name,
			AuthenticationProtocol: u.auth,
			PrivacyProtocol:        u.priv,
			SecretKey:              keys.auth,
			PrivacyKey:             keys.priv,
		},
	}
	pkt, err := dec.UnmarshalTrap(msg, false)
	if err != nil {
		if level == gosnmp.AuthPriv {
			return v3Result{reason: dropDecrypt}
		}
		return v3Result{reason: dropMalformed}
	}
	res := v3Result{pkt: pkt, user: u, keys: keys}
	if pkt.PDUType != gosnmp.InformRequest {
		return res
	}
	// An inform is sent to this engine, which is authoritative for it.
	if h.engineID != e.engineID {
		res.pkt, res.reason = nil, dropUnknownEngine
		if reportable {
			res.reply = e.report(&h, pkt.RequestID, pkt.ContextName, oidUsmStatsUnknownEngineIDs, nil, nil)
		}
		return res
	}
	boots, etime := e.clock()
	if level != gosnmp.NoAuthNoPriv &&
		(h.boots != int64(boots) || h.time < int64(etime)-usmTimeWindow || h.time > int64(etime)+usmTimeWindow) {
		res.pkt, res.reason = nil, dropTimeWindow
		if reportable {
			// Authenticated, so the sender may trust the clock it carries.
			res.reply = e.report(&h, pkt.RequestID, pkt.ContextName, oidUsmStatsNotInTimeWindows, u, &keys)
		}
		return res
	}
	return res
}

// keysFor returns the user's keys for the message's engine ID, once the
// message's digest proved it authentic (for an authenticated level).
func (e *usmEngine) keysFor(u *usmUser, msg []byte, h *usmHeader) (usmKeys, error) {
	if u.level == gosnmp.NoAuthNoPriv {
		return usmKeys{}, nil
	}
	ck := u.cfg.Name + "\x00" + h.engineID
	e.mu.Lock()
	k, ok := e.keys[ck]
	e.mu.Unlock()
	if ok {
		if !usmAuthentic(msg, h, u.auth, k.auth) {
			return usmKeys{}, errBadDigest
		}
		return k, nil
	}
	auth, err := u.authKey(h.engineID)
	if err != nil {
		return usmKeys{}, err
	}
	if !usmAuthentic(msg, h, u.auth, auth) {
		return usmKeys{}, errBadDigest
	}
	if k, err = u.localize(h.engineID); err != nil {
		return usmKeys{}, err
	}
	e.mu.Lock()
	if len(e.keys) >= maxUSMKeys {
		clear(e.keys)
	}
	e.keys[ck] = k
	e.mu.Unlock()
	return k, nil
}

var errBadDigest = errors.New("wrong digest")

// discovery answers an engine discovery request (RFC 3414 section 4) with
// a report that carries the listener's engine ID, boots and time.
func (e *usmEngine) discovery(msg []byte, h *usmHeader) v3Result {
	dec := &gosnmp.GoSNMP{
		Version:            gosnmp.Version3,
		SecurityModel:      gosnmp.UserSecurityModel,
		MsgFlags:           gosnmp.NoAuthNoPriv,
		SecurityParameters: &gosnmp.UsmSecurityParameters{},
	}
	pkt, err := dec.UnmarshalTrap(msg, true)
	if err != nil || pkt.PDUType != gosnmp.GetRequest && pkt.PDUType != gosnmp.InformRequest {
		return v3Result{reason: dropMalformed}
	}
	return v3Result{reason: dropDiscovery, reply: e.report(h, pkt.RequestID, pkt.ContextName, oidUsmStatsUnknownEngineIDs, nil, nil)}
}

// report builds a Report PDU with one usmStats counter: authenticated
// (authNoPriv) with a user and its keys, else noAuthNoPriv, as RFC 3414
// 3.1.2 wants when there is no key to authenticate with.
func (e *usmEngine) report(h *usmHeader, reqID uint32, ctxName, oid string, u *usmUser, keys *usmKeys) []byte {
	boots, etime := e.clock()
	e.mu.Lock()
	var n uint32
	if oid == oidUsmStatsNotInTimeWindows {
		e.notInTimeWindows++
		n = e.notInTimeWindows
	} else {
		e.unknownEngines++
		n = e.unknownEngines
	}
	e.mu.Unlock()
	level := gosnmp.NoAuthNoPriv
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    e.engineID,
		AuthoritativeEngineBoots: boots,
		AuthoritativeEngineTime:  etime,
		UserName:                 h.user,
	}
	if u != nil {
		level = gosnmp.AuthNoPriv
		sp.AuthenticationProtocol = u.auth
		sp.SecretKey = keys.auth
	}
	pkt := &gosnmp.SnmpPacket{
		Version:            gosnmp.Version3,
		MsgFlags:           level,
		SecurityModel:      gosnmp.UserSecurityModel,
		SecurityParameters: sp,
		MsgID:              h.msgID,
		MsgMaxSize:         65507,
		ContextEngineID:    e.engineID,
		ContextName:        ctxName,
		PDUType:            gosnmp.Report,
		RequestID:          reqID,
		Variables:          []gosnmp.SnmpPDU{{Name: oid, Type: gosnmp.Counter32, Value: uint(n)}},
	}
	out, err := pkt.MarshalMsg()
	if err != nil {
		return nil
	}
	return out
}

// informResponse builds the Response PDU that acknowledges a v3 inform:
// at the inform's security level, with this engine's ID, boots and time.
func (e *usmEngine) informResponse(pkt *gosnmp.SnmpPacket, u *usmUser, keys usmKeys) ([]byte, error) {
	boots, etime := e.clock()
	level := pkt.MsgFlags & gosnmp.AuthPriv
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    e.engineID,
		AuthoritativeEngineBoots: boots,
		AuthoritativeEngineTime:  etime,
		UserName:                 u.cfg.Name,
		AuthenticationProtocol:   u.auth,
		PrivacyProtocol:          u.priv,
		SecretKey:                keys.auth,
		PrivacyKey:               keys.priv,
	}
	if level == gosnmp.AuthPriv {
		salt := make([]byte, 8)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		if u.priv == gosnmp.DES {
			// RFC 3414 8.1.1.1: engine boots, then a local value.
			binary.BigEndian.PutUint32(salt, boots)
		}
		sp.PrivacyParameters = salt
	}
	resp := &gosnmp.SnmpPacket{
		Version:            gosnmp.Version3,
		MsgFlags:           level,
		SecurityModel:      gosnmp.UserSecurityModel,
		SecurityParameters: sp,
		MsgID:              pkt.MsgID,
		MsgMaxSize:         65507,
		// The request's scope, as RFC 3412 7.1 step 4 wants of a response
		// (net-snmp drops a response that names another context engine).
		ContextEngineID: pkt.ContextEngineID,
		ContextName:     pkt.ContextName,
		PDUType:         gosnmp.GetResponse,
		RequestID:       pkt.RequestID,
		Variables:       pkt.Variables,
	}
	return resp.MarshalMsg()
}

// usmHeader is the part of an SNMPv3 message read before any security
// processing: msgGlobalData and the USM security parameters.
type usmHeader struct {
	msgID     uint32
	flags     gosnmp.SnmpV3MsgFlags
	secModel  int64
	engineID  string
	boots     int64
	time      int64
	user      string
	authStart int // offset of msgAuthenticationParameters' value
	authLen   int
}

var errBER = errors.New("malformed BER")

// berTLV reads the tag-length-value at b[off:] and returns the tag and the
// value's bounds.
func berTLV(b []byte, off int) (tag byte, start, end int, err error) {
	if off < 0 || off+2 > len(b) {
		return 0, 0, 0, errBER
	}
	tag = b[off]
	l := int(b[off+1])
	start = off + 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 3 || start+n > len(b) {
			return 0, 0, 0, errBER
		}
		l = 0
		for _, c := range b[start : start+n] {
			l = l<<8 | int(c)
		}
		start += n
	}
	end = start + l
	if end > len(b) {
		return 0, 0, 0, errBER
	}
	return tag, start, end, nil
}

func berInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	v := int64(int8(b[0]))
	for _, c := range b[1:] {
		v = v<<8 | int64(c)
	}
	return v, true
}

// parseUSMHeader reads msgGlobalData and the USM security parameters of an
// SNMPv3 message.
func parseUSMHeader(b []byte) (h usmHeader, err error) {
	tag, start, end, err := berTLV(b, 0)
	if err != nil || tag != 0x30 {
		return h, errBER
	}
	b = b[:end]
	_, _, off, err := berTLV(b, start) // msgVersion
	if err != nil {
		return h, err
	}
	tag, gs, ge, err := berTLV(b, off) // msgGlobalData
	if err != nil || tag != 0x30 {
		return h, errBER
	}
	var ints [3]int64
	p := gs
	for i := range 4 {
		tag, s, e, err := berTLV(b[:ge], p)
		if err != nil {
			return h, err
		}
		switch {
		case i == 2 && tag == byte(gosnmp.OctetString) && e-s == 1:
			h.flags = gosnmp.SnmpV3MsgFlags(b[s])
		case i != 2 && tag == byte(gosnmp.Integer):
			v, ok := berInt(b[s:e])
			if !ok {
				return h, errBER
			}
			ints[min(i, 2)] = v
		default:
			return h, errBER
		}
		p = e
	}
	h.msgID, h.secModel = uint32(ints[0]), ints[2]
	tag, ss, se, err := berTLV(b, ge) // msgSecurityParameters OCTET STRING
	if err != nil || tag != byte(gosnmp.OctetString) {
		return h, errBER
	}
	tag, us, ue, err := berTLV(b[:se], ss) // UsmSecurityParameters SEQUENCE
	if err != nil || tag != 0x30 {
		return h, errBER
	}
	p = us
	for i := range 6 {
		tag, s, e, err := berTLV(b[:ue], p)
		if err != nil {
			return h, err
		}
		switch i {
		case 1, 2:
			v, ok := berInt(b[s:e])
			if tag != byte(gosnmp.Integer) || !ok {
				return h, errBER
			}
			if i == 1 {
				h.boots = v
			} else {
				h.time = v
			}
		default:
			if tag != byte(gosnmp.OctetString) {
				return h, errBER
			}
			switch i {
			case 0:
				h.engineID = string(b[s:e])
			case 3:
				h.user = string(b[s:e])
			case 4:
				h.authStart, h.authLen = s, e-s
			}
		}
		p = e
	}
	return h, nil
}

// usmMACLen is the length of the truncated HMAC of each protocol (RFC 3414,
// RFC 7860).
var usmMACLen = map[gosnmp.SnmpV3AuthProtocol]int{
	gosnmp.MD5: 12, gosnmp.SHA: 12, gosnmp.SHA224: 16, gosnmp.SHA256: 24, gosnmp.SHA384: 32, gosnmp.SHA512: 48,
}

// usmAuthentic checks the message's HMAC. It zeroes the MAC field while
// hashing and puts it back, so gosnmp can check it again while decoding.
func usmAuthentic(msg []byte, h *usmHeader, p gosnmp.SnmpV3AuthProtocol, key []byte) bool {
	n, ok := usmMACLen[p]
	if !ok || h.authLen != n || !p.HashType().Available() {
		return false
	}
	field := msg[h.authStart : h.authStart+n]
	got := make([]byte, n)
	copy(got, field)
	clear(field)
	mac := hmac.New(p.HashType().New, key)
	mac.Write(msg)
	sum := mac.Sum(nil)[:n]
	copy(field, got)
	return hmac.Equal(sum, got)
}
