package poller

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon/internal/snmpv3"
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
			u.auth, _ = snmpv3.AuthProtocol(c.AuthProtocol)
			u.level = gosnmp.AuthNoPriv
		}
		if c.PrivProtocol != "" {
			u.priv, _ = snmpv3.PrivProtocol(c.PrivProtocol)
			u.level = gosnmp.AuthPriv
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
	h, err := snmpv3.ParseHeader(msg)
	if err != nil || h.SecModel != int64(gosnmp.UserSecurityModel) {
		return v3Result{reason: dropMalformed}
	}
	level := h.Flags & gosnmp.AuthPriv
	if level == gosnmp.AuthPriv&^gosnmp.AuthNoPriv { // privacy without authentication
		return v3Result{reason: dropMalformed}
	}
	reportable := h.Flags&gosnmp.Reportable != 0
	if h.User == "" && h.EngineID == "" && level == gosnmp.NoAuthNoPriv && reportable {
		return e.discovery(msg, &h)
	}
	u := e.users[h.User]
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
			AuthoritativeEngineID:  h.EngineID,
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
	if h.EngineID != e.engineID {
		res.pkt, res.reason = nil, dropUnknownEngine
		if reportable {
			res.reply = e.report(&h, pkt.RequestID, pkt.ContextName, oidUsmStatsUnknownEngineIDs, nil, nil)
		}
		return res
	}
	boots, etime := e.clock()
	if level != gosnmp.NoAuthNoPriv &&
		(h.Boots != int64(boots) || h.Time < int64(etime)-snmpv3.TimeWindow || h.Time > int64(etime)+snmpv3.TimeWindow) {
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
func (e *usmEngine) keysFor(u *usmUser, msg []byte, h *snmpv3.Header) (usmKeys, error) {
	if u.level == gosnmp.NoAuthNoPriv {
		return usmKeys{}, nil
	}
	ck := u.cfg.Name + "\x00" + h.EngineID
	e.mu.Lock()
	k, ok := e.keys[ck]
	e.mu.Unlock()
	if ok {
		if !snmpv3.Authentic(msg, h, u.auth, k.auth) {
			return usmKeys{}, errBadDigest
		}
		return k, nil
	}
	auth, err := u.authKey(h.EngineID)
	if err != nil {
		return usmKeys{}, err
	}
	if !snmpv3.Authentic(msg, h, u.auth, auth) {
		return usmKeys{}, errBadDigest
	}
	if k, err = u.localize(h.EngineID); err != nil {
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
func (e *usmEngine) discovery(msg []byte, h *snmpv3.Header) v3Result {
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
func (e *usmEngine) report(h *snmpv3.Header, reqID uint32, ctxName, oid string, u *usmUser, keys *usmKeys) []byte {
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
		UserName:                 h.User,
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
		MsgID:              h.MsgID,
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
