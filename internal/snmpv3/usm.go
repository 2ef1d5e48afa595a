// Package snmpv3 is meshmon's one copy of what both ends of SNMPv3 need
// before gosnmp decodes a message (RFC 3412, RFC 3414): the auth and
// privacy protocols by meshmon's names (meshmon.AuthProtocols and
// meshmon.PrivProtocols), the header read before any security processing,
// the digest check and the time window. The poller's trap listener and the
// simulator's agent use it.
package snmpv3

import (
	"crypto/hmac"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// TimeWindow is the USM time window in seconds (RFC 3414 3.2.7).
const TimeWindow = 150

var (
	authByName = byName(meshmon.AuthProtocols, gosnmp.MD5, gosnmp.SHA512)
	privByName = byName(meshmon.PrivProtocols, gosnmp.DES, gosnmp.AES256C)
)

// byName maps each of names to the gosnmp constant from first to last whose
// String is that name (gosnmp names its protocols as meshmon does).
func byName[P interface {
	~uint8
	String() string
}](names []string, first, last P) map[string]P {
	m := make(map[string]P, len(names))
	for p := first; p <= last; p++ {
		for _, n := range names {
			if p.String() == n {
				m[n] = p
			}
		}
	}
	return m
}

// AuthProtocol returns gosnmp's auth protocol of one of
// meshmon.AuthProtocols, and false for any other name.
func AuthProtocol(name string) (gosnmp.SnmpV3AuthProtocol, bool) {
	p, ok := authByName[name]
	return p, ok
}

// PrivProtocol returns gosnmp's privacy protocol of one of
// meshmon.PrivProtocols, and false for any other name.
func PrivProtocol(name string) (gosnmp.SnmpV3PrivProtocol, bool) {
	p, ok := privByName[name]
	return p, ok
}

// Header is the part of an SNMPv3 message read before any security
// processing: msgGlobalData and the USM security parameters.
type Header struct {
	MsgID     uint32
	MaxSize   int64
	Flags     gosnmp.SnmpV3MsgFlags
	SecModel  int64
	EngineID  string
	Boots     int64
	Time      int64
	User      string
	AuthStart int // offset of msgAuthenticationParameters' value in the message
	AuthLen   int
}

// TLV reads the tag-length-value at b[off:] and returns the tag and the
// value's bounds, or ErrBER.
func TLV(b []byte, off int) (tag byte, start, end int, err error) {
	if off < 0 || off+2 > len(b) {
		return 0, 0, 0, ErrBER
	}
	tag = b[off]
	l := int(b[off+1])
	start = off + 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 3 || start+n > len(b) {
			return 0, 0, 0, ErrBER
		}
		l = 0
		for _, c := range b[start : start+n] {
			l = l<<8 | int(c)
		}
		start += n
	}
	end = start + l
	if end > len(b) {
		return 0, 0, 0, ErrBER
	}
	return tag, start, end, nil
}

// Int reads a BER INTEGER's value of at most 8 bytes.
func Int(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	v := int64(int8(b[0]))
	for _, c := range b[1:] {
		v = v<<8 | int64(c)
	}
	return v, true
}

// ParseHeader reads msgGlobalData and the USM security parameters of an
// SNMPv3 message, or fails with ErrBER.
func ParseHeader(b []byte) (h Header, err error) {
	tag, start, end, err := TLV(b, 0)
	if err != nil || tag != 0x30 {
		return h, ErrBER
	}
	b = b[:end]
	_, _, off, err := TLV(b, start) // msgVersion
	if err != nil {
		return h, err
	}
	tag, gs, ge, err := TLV(b, off) // msgGlobalData
	if err != nil || tag != 0x30 {
		return h, ErrBER
	}
	var ints [3]int64 // msgID, msgMaxSize, msgSecurityModel
	p := gs
	for i := range 4 {
		tag, s, e, err := TLV(b[:ge], p)
		if err != nil {
			return h, err
		}
		switch {
		case i == 2 && tag == byte(gosnmp.OctetString) && e-s == 1:
			h.Flags = gosnmp.SnmpV3MsgFlags(b[s])
		case i != 2 && tag == byte(gosnmp.Integer):
			v, ok := Int(b[s:e])
			if !ok {
				return h, ErrBER
			}
			ints[min(i, 2)] = v
		default:
			return h, ErrBER
		}
		p = e
	}
	h.MsgID, h.MaxSize, h.SecModel = uint32(ints[0]), ints[1], ints[2]
	tag, ss, se, err := TLV(b, ge) // msgSecurityParameters OCTET STRING
	if err != nil || tag != byte(gosnmp.OctetString) {
		return h, ErrBER
	}
	tag, us, ue, err := TLV(b[:se], ss) // UsmSecurityParameters SEQUENCE
	if err != nil || tag != 0x30 {
		return h, ErrBER
	}
	p = us
	for i := range 6 {
		tag, s, e, err := TLV(b[:ue], p)
		if err != nil {
			return h, err
		}
		switch i {
		case 1, 2:
			v, ok := Int(b[s:e])
			if tag != byte(gosnmp.Integer) || !ok {
				return h, ErrBER
			}
			if i == 1 {
				h.Boots = v
			} else {
				h.Time = v
			}
		default:
			if tag != byte(gosnmp.OctetString) {
				return h, ErrBER
			}
			switch i {
			case 0:
				h.EngineID = string(b[s:e])
			case 3:
				h.User = string(b[s:e])
			case 4:
				h.AuthStart, h.AuthLen = s, e-s
			}
		}
		p = e
	}
	return h, nil
}

// macLen is the length of the truncated HMAC of each protocol (RFC 3414,
// RFC 7860).
var macLen = map[gosnmp.SnmpV3AuthProtocol]int{
	gosnmp.MD5: 12, gosnmp.SHA: 12, gosnmp.SHA224: 16, gosnmp.SHA256: 24, gosnmp.SHA384: 32, gosnmp.SHA512: 48,
}

// Authentic checks the message's HMAC with the localized auth key. It
// zeroes the MAC field while hashing and puts it back, so gosnmp can check
// it again while decoding.
func Authentic(msg []byte, h *Header, p gosnmp.SnmpV3AuthProtocol, key []byte) bool {
	n, ok := macLen[p]
	if !ok || h.AuthLen != n || !p.HashType().Available() || h.AuthStart < 0 || h.AuthStart+n > len(msg) {
		return false
	}
	field := msg[h.AuthStart : h.AuthStart+n]
	got := make([]byte, n)
	copy(got, field)
	clear(field)
	mac := hmac.New(p.HashType().New, key)
	mac.Write(msg)
	sum := mac.Sum(nil)[:n]
	copy(field, got)
	return hmac.Equal(sum, got)
}
