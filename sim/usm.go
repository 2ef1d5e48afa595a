package sim

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // HMAC-MD5-96 is what USM specifies
	"crypto/sha1" //nolint:gosec // HMAC-SHA-96 is what USM specifies
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"
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

// timeWindow is the USM time window (RFC 3414 3.2.7).
const timeWindow = 150

var authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{
	"MD5": gosnmp.MD5, "SHA": gosnmp.SHA, "SHA224": gosnmp.SHA224,
	"SHA256": gosnmp.SHA256, "SHA384": gosnmp.SHA384, "SHA512": gosnmp.SHA512,
}

var privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{
	"DES": gosnmp.DES, "AES": gosnmp.AES, "AES192": gosnmp.AES192,
	"AES256": gosnmp.AES256, "AES192C": gosnmp.AES192C, "AES256C": gosnmp.AES256C,
}

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
		uu.auth, uu.level = authProtocols[u.AuthProtocol], gosnmp.AuthNoPriv
	}
	if u.PrivProtocol != "" {
		uu.priv, uu.level = privProtocols[u.PrivProtocol], gosnmp.AuthPriv
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

// v3Header is the part of an SNMPv3 message read before any security
// processing.
type v3Header struct {
	msgID     uint32
	maxSize   int64
	flags     gosnmp.SnmpV3MsgFlags
	secModel  int64
	engineID  string
	boots     int64
	time      int64
	user      string
	authStart int // offset of msgAuthenticationParameters' value in the message
	authLen   int
}

var errBER = errors.New("malformed BER")

// tlv reads the tag-length-value at b[off:] and returns the tag and the
// value's bounds.
func tlv(b []byte, off int) (tag byte, start, end int, err error) {
	if off+2 > len(b) {
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

// messageVersion reads the msgVersion of an SNMP message.
func messageVersion(b []byte) (gosnmp.SnmpVersion, bool) {
	tag, start, end, err := tlv(b, 0)
	if err != nil || tag != 0x30 || end != len(b) {
		return 0, false
	}
	tag, vs, ve, err := tlv(b, start)
	if err != nil || tag != byte(gosnmp.Integer) {
		return 0, false
	}
	v, ok := berInt(b[vs:ve])
	if !ok || v < 0 || v > 3 {
		return 0, false
	}
	return gosnmp.SnmpVersion(v), true
}

// parseV3Header reads msgGlobalData and the USM security parameters.
func parseV3Header(b []byte) (h v3Header, err error) {
	_, start, _, err := tlv(b, 0)
	if err != nil {
		return h, err
	}
	_, _, off, err := tlv(b, start) // msgVersion
	if err != nil {
		return h, err
	}
	tag, gs, ge, err := tlv(b, off) // msgGlobalData
	if err != nil || tag != 0x30 {
		return h, errBER
	}
	ints := make([]int64, 0, 2)
	p := gs
	for i := 0; i < 4; i++ {
		tag, s, e, err := tlv(b[:ge], p)
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
			ints = append(ints, v)
		default:
			return h, errBER
		}
		p = e
	}
	h.msgID, h.maxSize, h.secModel = uint32(ints[0]), ints[1], ints[2]
	tag, ss, se, err := tlv(b, ge) // msgSecurityParameters OCTET STRING
	if err != nil || tag != byte(gosnmp.OctetString) {
		return h, errBER
	}
	tag, us, ue, err := tlv(b[:se], ss) // UsmSecurityParameters SEQUENCE
	if err != nil || tag != 0x30 {
		return h, errBER
	}
	p = us
	for i := 0; i < 6; i++ {
		tag, s, e, err := tlv(b[:ue], p)
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

// macLen is the length of the truncated HMAC of each protocol (RFC 3414,
// RFC 7860).
func macHash(p gosnmp.SnmpV3AuthProtocol) (func() hash.Hash, int) {
	switch p {
	case gosnmp.MD5:
		return md5.New, 12
	case gosnmp.SHA:
		return sha1.New, 12
	case gosnmp.SHA224:
		return sha256.New224, 16
	case gosnmp.SHA256:
		return sha256.New, 24
	case gosnmp.SHA384:
		return sha512.New384, 32
	case gosnmp.SHA512:
		return sha512.New, 48
	}
	return nil, 0
}

// authentic checks the message's HMAC. It zeroes the MAC field while
// hashing and puts it back, so gosnmp can check it again while decoding.
func authentic(msg []byte, h *v3Header, p gosnmp.SnmpV3AuthProtocol, key []byte) bool {
	newHash, n := macHash(p)
	if newHash == nil || h.authLen != n {
		return false
	}
	field := msg[h.authStart : h.authStart+n]
	got := make([]byte, n)
	copy(got, field)
	clear(field)
	mac := hmac.New(newHash, key)
	mac.Write(msg)
	sum := mac.Sum(nil)[:n]
	copy(field, got)
	return hmac.Equal(sum, got)
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
	h, err := parseV3Header(msg)
	if err != nil || h.secModel != int64(gosnmp.UserSecurityModel) {
		return nil
	}
	level := h.flags & gosnmp.AuthPriv
	reportable := h.flags&gosnmp.Reportable != 0
	if level == gosnmp.AuthPriv&^gosnmp.AuthNoPriv { // privacy without authentication is invalid
		return nil
	}
	if h.engineID != a.engineID {
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
	ui := s.userIndex(h.user)
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
		if !authentic(msg, &h, u.auth, keys.auth) {
			n := s.usm.wrongDigests.Add(1)
			return a.reportIf(reportable, &h, OIDUsmStatsWrongDigests, n)
		}
		if h.boots != int64(boots) || h.time < int64(etime)-timeWindow || h.time > int64(etime)+timeWindow {
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
	resp.MsgID = h.msgID
	resp.ContextEngineID = a.engineID
	resp.ContextName = pkt.ContextName
	resp.SecurityParameters = a.securityParameters(u, &keys, level, boots, etime)
	limit := maxResponseSize
	if h.maxSize >= 484 && h.maxSize < int64(limit) {
		limit = int(h.maxSize)
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

func (a *Agent) reportIf(reportable bool, h *v3Header, oid string, n uint32) []byte {
	if !reportable {
		return nil
	}
	return a.report(h, 0, "", oid, n, nil, nil)
}

// report builds a Report PDU carrying one usmStats counter. With a user it
// is authenticated (authNoPriv); otherwise noAuthNoPriv, as RFC 3414 3.1.2
// wants for failures that leave no key to authenticate with.
func (a *Agent) report(h *v3Header, reqID uint32, ctxName, oid string, n uint32, u *usmUser, keys *userKeys) []byte {
	boots, etime := a.engineClock()
	level := gosnmp.NoAuthNoPriv
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID:    a.engineID,
		AuthoritativeEngineBoots: boots,
		AuthoritativeEngineTime:  etime,
		UserName:                 h.user,
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
		MsgID:              h.msgID,
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
