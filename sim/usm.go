package sim

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon/internal/snmpv3"
)

// USM statistics OIDs reported to managers (RFC 3414 5).
const (
	OIDUsmStatsUnsupportedSecLevels = ".1.3.6.1.6.3.15.1.1.1.0"
	OIDUsmStatsNotInTimeWindows     = ".1.3.6.1.6.3.15.1.1.2.0"
	OIDUsmStatsUnknownUserNames     = ".1.3.6.1.6.3.15.1.1.3.0"
	OIDUsmStatsUnknownEngineIDs     = ".1.3.6.1.6.3.15.1.1.4.0"
	OIDUsmStatsWrongDigests         = ".1.3.6.1.6.3.15.1.1.5.0"
	OIDUsmStatsDecryptionErrors     = ".1.3.6.1.6.3.15.1.1.6.0"
)

// usmUser is a configured user with its protocols resolved.
type usmUser struct {
	name  string
	auth  gosnmp.SnmpV3AuthProtocol
	priv  gosnmp.SnmpV3PrivProtocol
	level gosnmp.SnmpV3MsgFlags
	cfg   V3User
}

// userKeys are a user's keys localized to one agent's engine ID.
type userKeys struct {
	auth, priv []byte
}

func newUSMUser(u V3User) usmUser {
	uu := usmUser{name: u.Name, auth: gosnmp.NoAuth, priv: gosnmp.NoPriv, level: gosnmp.NoAuthNoPriv, cfg: u}
	if u.AuthProtocol != "" {
		uu.auth, _ = snmpv3.AuthProtocol(u.AuthProtocol)
		uu.level = gosnmp.AuthNoPriv
	}
	if u.PrivProtocol != "" {
		uu.priv, _ = snmpv3.PrivProtocol(u.PrivProtocol)
		uu.level = gosnmp.AuthPriv
	}
	return uu
}

// localize derives the user's keys for an engine ID (RFC 3414 2.6, RFC
// 3826 3.1.2.1). gosnmp caches the expensive password-to-key step, so
// localizing the auth key per agent is one hash. gosnmp's own privacy key
// derivation for AES-128 runs the Reeder extension even when no extension
// is needed, which costs a fresh 1 MB password hash per engine ID (and a
// global cache entry); so the key is derived here from the localized
// privacy pass phrase, which gives the same bytes. Only AES192C and
// AES256C (the Reeder extension proper) still go through gosnmp.
func (u *usmUser) localize(engineID string) (userKeys, error) {
	if u.level == gosnmp.NoAuthNoPriv {
		return userKeys{}, nil
	}
	var k userKeys
	var err error
	if k.auth, err = localKey(u.auth, u.cfg.AuthPassword, engineID); err != nil {
		return userKeys{}, fmt.Errorf("localize auth key of user %s: %w", u.name, err)
	}
	if u.level != gosnmp.AuthPriv {
		return k, nil
	}
	switch u.priv {
	case gosnmp.DES, gosnmp.AES, gosnmp.AES192, gosnmp.AES256:
		key, err := localKey(u.auth, u.cfg.PrivPassword, engineID)
		if err != nil {
			return userKeys{}, fmt.Errorf("localize priv key of user %s: %w", u.name, err)
		}
		switch u.priv {
		case gosnmp.DES: // DES uses bytes 0-7 (key) and 8-15 (pre-IV)
			k.priv = key
		case gosnmp.AES:
			k.priv = key[:16]
		default: // Blumenthal extension, as gosnmp does it
			h := u.auth.HashType().New()
			h.Write(key)
			n := 24
			if u.priv == gosnmp.AES256 {
				n = 32
			}
			k.priv = append(key, h.Sum(nil)...)[:n]
		}
	default:
		sp := &gosnmp.UsmSecurityParameters{
			AuthoritativeEngineID:    engineID,
			UserName:                 u.name,
			AuthenticationProtocol:   u.auth,
			AuthenticationPassphrase: u.cfg.AuthPassword,
			PrivacyProtocol:          u.priv,
			PrivacyPassphrase:        u.cfg.PrivPassword,
			SecretKey:                k.auth,
		}
		if err := sp.InitSecurityKeys(); err != nil {
			return userKeys{}, fmt.Errorf("localize priv key of user %s: %w", u.name, err)
		}
		k.priv = sp.PrivacyKey
	}
	return k, nil
}

// localKey is pass phrase localized to engineID with the auth protocol's
// hash, through gosnmp (which caches the password-to-key step).
func localKey(auth gosnmp.SnmpV3AuthProtocol, pass, engineID string) ([]byte, error) {
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    engineID,
		UserName:                 "x",
		AuthenticationProtocol:   auth,
		AuthenticationPassphrase: pass,
		PrivacyProtocol:          gosnmp.NoPriv,
	}
	if err := sp.InitSecurityKeys(); err != nil {
		return nil, err
	}
	return sp.SecretKey, nil
}

// engineID builds an RFC 3411 engine ID: net-snmp's enterprise number,
// format 5 (octets), 4 bytes unique to the Sim and the agent's index.
func engineID(seed [4]byte, index int) string {
	b := []byte{0x80, 0x00, 0x1f, 0x88, 0x05, seed[0], seed[1], seed[2], seed[3], 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[9:], uint32(index))
	return string(b)
}

// usmStats counts USM failures over the whole Sim (RFC 3414 usmStats).
type usmStats struct {
	unsupportedSecLevels, notInTimeWindows, unknownUserNames,
	unknownEngineIDs, wrongDigests, decryptionErrors atomic.Uint32
}

// messageVersion reads the msgVersion of an SNMP message.
func messageVersion(b []byte) (gosnmp.SnmpVersion, bool) {
	tag, start, end, err := snmpv3.TLV(b, 0)
	if err != nil || tag != 0x30 || end != len(b) {
		return 0, false
	}
	tag, vs, ve, err := snmpv3.TLV(b, start)
	if err != nil || tag != byte(gosnmp.Integer) {
		return 0, false
	}
	v, ok := snmpv3.Int(b[vs:ve])
	if !ok || v < 0 || v > 3 {
		return 0, false
	}
	return gosnmp.SnmpVersion(v), true
}

// engineClock returns boots and engine time (seconds since boot).
func (a *Agent) engineClock() (boots, engineTime uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	el := a.sim.now().Sub(a.bootAt) / time.Second
	return a.boots, uint32(max(0, min(el, 1<<31-1)))
}

func (a *Agent) handleV3(msg []byte) []byte {
	s := a.sim
	h, err := snmpv3.ParseHeader(msg)
	if err != nil || h.SecModel != int64(gosnmp.UserSecurityModel) {
		return nil
	}
	level := h.Flags & gosnmp.AuthPriv
	reportable := h.Flags&gosnmp.Reportable != 0
	if level == gosnmp.AuthPriv&^gosnmp.AuthNoPriv { // privacy without authentication is invalid
		return nil
	}
	if h.EngineID != a.engineID {
		n := s.usm.unknownEngineIDs.Add(1)
		if !reportable {
			return nil
		}
		var reqID uint32
		var ctxName string
		if level == gosnmp.NoAuthNoPriv {
			if pkt, err := s.v3PlainDecoder.UnmarshalTrap(msg, false); err == nil {
				reqID, ctxName = pkt.RequestID, pkt.ContextName
			}
		}
		return a.report(&h, reqID, ctxName, OIDUsmStatsUnknownEngineIDs, n, nil, nil)
	}
	ui := s.userIndex(h.User)
	if ui < 0 {
		n := s.usm.unknownUserNames.Add(1)
		return a.reportIf(reportable, &h, OIDUsmStatsUnknownUserNames, n)
	}
	u, keys := &s.users[ui], a.keys[ui]
	if level != u.level {
		n := s.usm.unsupportedSecLevels.Add(1)
		return a.reportIf(reportable, &h, OIDUsmStatsUnsupportedSecLevels, n)
	}
	boots, etime := a.engineClock()
	if level&gosnmp.AuthNoPriv != 0 {
		if !snmpv3.Authentic(msg, &h, u.auth, keys.auth) {
			n := s.usm.wrongDigests.Add(1)
			return a.reportIf(reportable, &h, OIDUsmStatsWrongDigests, n)
		}
		if h.Boots != int64(boots) || h.Time < int64(etime)-snmpv3.TimeWindow || h.Time > int64(etime)+snmpv3.TimeWindow {
			n := s.usm.notInTimeWindows.Add(1)
			if !reportable {
				return nil
			}
			// Sent authenticated, so the manager can trust the new clock.
			return a.report(&h, 0, "", OIDUsmStatsNotInTimeWindows, n, u, &keys)
		}
	}
	dec := &gosnmp.GoSNMP{
		Version:       gosnmp.Version3,
		SecurityModel: gosnmp.UserSecurityModel,
		MsgFlags:      level,
		SecurityParameters: &gosnmp.UsmSecurityParameters{
			AuthoritativeEngineID:  a.engineID,
			UserName:               u.name,
			AuthenticationProtocol: u.auth,
			PrivacyProtocol:        u.priv,
			SecretKey:              keys.auth,
			PrivacyKey:             keys.priv,
		},
	}
	pkt, err := dec.UnmarshalTrap(msg, false)
	if err != nil {
		if level == gosnmp.AuthPriv {
			n := s.usm.decryptionErrors.Add(1)
			return a.reportIf(reportable, &h, OIDUsmStatsDecryptionErrors, n)
		}
		return nil
	}
	resp, ok := a.process(pkt, false)
	if !ok {
		return nil
	}
	resp.Version = gosnmp.Version3
	resp.MsgFlags = level
	resp.SecurityModel = gosnmp.UserSecurityModel
	resp.MsgID = h.MsgID
	resp.ContextEngineID = a.engineID
	resp.ContextName = pkt.ContextName
	resp.SecurityParameters = a.securityParameters(u, &keys, level, boots, etime)
	limit := maxResponseSize
	if h.MaxSize >= 484 && h.MaxSize < int64(limit) {
		limit = int(h.MaxSize)
	}
	return marshalFitting(resp, pkt, limit)
}

func (a *Agent) securityParameters(u *usmUser, keys *userKeys, level gosnmp.SnmpV3MsgFlags, boots, etime uint32) *gosnmp.UsmSecurityParameters {
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    a.engineID,
		AuthoritativeEngineBoots: boots,
		AuthoritativeEngineTime:  etime,
		UserName:                 u.name,
		AuthenticationProtocol:   u.auth,
		PrivacyProtocol:          u.priv,
		SecretKey:                keys.auth,
		PrivacyKey:               keys.priv,
	}
	if level == gosnmp.AuthPriv {
		salt := make([]byte, 8)
		if u.priv == gosnmp.DES {
			// RFC 3414 8.1.1.1: engine boots, then a local counter.
			binary.BigEndian.PutUint32(salt, boots)
			binary.BigEndian.PutUint32(salt[4:], uint32(a.salt.Add(1)))
		} else {
			binary.BigEndian.PutUint64(salt, a.salt.Add(1))
		}
		sp.PrivacyParameters = salt
	}
	return sp
}

func (a *Agent) reportIf(reportable bool, h *snmpv3.Header, oid string, n uint32) []byte {
	if !reportable {
		return nil
	}
	return a.report(h, 0, "", oid, n, nil, nil)
}

// report builds a Report PDU carrying one usmStats counter. With a user it
// is authenticated (authNoPriv); otherwise noAuthNoPriv, as RFC 3414 3.1.2
// wants for failures that leave no key to authenticate with.
func (a *Agent) report(h *snmpv3.Header, reqID uint32, ctxName, oid string, n uint32, u *usmUser, keys *userKeys) []byte {
	boots, etime := a.engineClock()
	level := gosnmp.NoAuthNoPriv
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    a.engineID,
		AuthoritativeEngineBoots: boots,
		AuthoritativeEngineTime:  etime,
		UserName:                 h.User,
	}
	if u != nil {
		level = gosnmp.AuthNoPriv
		sp = a.securityParameters(u, keys, level, boots, etime)
	}
	pkt := &gosnmp.SnmpPacket{
		Version:            gosnmp.Version3,
		MsgFlags:           level,
		SecurityModel:      gosnmp.UserSecurityModel,
		SecurityParameters: sp,
		MsgID:              h.MsgID,
		ContextEngineID:    a.engineID,
		ContextName:        ctxName,
		PDUType:            gosnmp.Report,
		RequestID:          reqID,
		Variables:          []gosnmp.SnmpPDU{{Name: oid, Type: gosnmp.Counter32, Value: n}},
	}
	out, err := pkt.MarshalMsg()
	if err != nil {
		a.sim.log.Debug("sim: marshal report", "agent", a.name, "err", err)
		return nil
	}
	return out
}
