package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// The first byte of every encoded spool entry is its layout's version. Bump
// it when the layout changes, and keep decoding the old ones: a poller
// upgraded with messages in its spool publishes them all.
const (
	codecV1 = 1 // subject, id, data
	codecV2 = 2 // the message's typed fields, id, data
	codecV3 = 3 // as version 2, with the data compressed (S2)
)

// encodeMessage lays out a message as
//
//	version(2 or 3) | stream(1) | uvarint len(Site) | Site | uvarint len(Device) | Device |
//	uvarint len(Kind) | Kind | varint Time (Unix ns; 0 for the zero time) |
//	uvarint len(ID) | ID | Data
//
// Data runs to the end of the value, so it needs no length. This is several
// times cheaper than JSON (which would base64 the payload) and the spool is
// on the hot path of every poll. Version 3 holds Data as one S2 block, and
// is written when that is shorter (the JSON of a 512 B event shrinks by
// about a fifth); data that does not shrink is written as version 2.
func encodeMessage(m meshmon.Message) []byte {
	b := encodeHeader(m, codecV3, len(m.Data))
	if len(m.Data) >= minCompress {
		hdr := len(b)
		b = compressData(b, m.Data)
		if len(b)-hdr < len(m.Data) {
			return b
		}
		b = b[:hdr]
	}
	b[0] = codecV2
	return append(b, m.Data...)
}

// encodeV2 is encodeMessage as releases before codec version 3 wrote it.
func encodeV2(m meshmon.Message) []byte {
	b := encodeHeader(m, codecV2, len(m.Data))
	return append(b, m.Data...)
}

// encodeHeader lays out everything before Data, in a slice with room for
// room more bytes.
func encodeHeader(m meshmon.Message, version byte, room int) []byte {
	n := 2 + 5*binary.MaxVarintLen64 + len(m.Site) + len(m.Device) + len(m.Kind) + len(m.ID) + room
	b := make([]byte, 0, n)
	b = append(b, version, byte(m.Stream))
	for _, s := range [...]string{m.Site, m.Device, m.Kind} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var ns int64
	if !m.Time.IsZero() {
		ns = m.Time.UnixNano()
	}
	b = binary.AppendVarint(b, ns)
	b = binary.AppendUvarint(b, uint64(len(m.ID)))
	return append(b, m.ID...)
}

var errShort = errors.New("truncated")

// decodeMessage is the inverse of encodeMessage, and reads the entries of
// codec versions 1 and 2 as well. It copies what it keeps, since b belongs to
// bbolt's memory map and is only valid inside the transaction.
func decodeMessage(b []byte) (meshmon.Message, error) {
	if len(b) == 0 {
		return meshmon.Message{}, errShort
	}
	switch b[0] {
	case codecV3:
		m, err := decodeV2(b[1:])
		if err != nil {
			return m, err
		}
		if m.Data, err = decompressData(m.Data); err != nil {
			return m, fmt.Errorf("data: %w", err)
		}
		return m, nil
	case codecV2:
		return decodeV2(b[1:])
	case codecV1:
		return decodeV1(b[1:])
	}
	return meshmon.Message{}, fmt.Errorf("unknown encoding version %d", b[0])
}

// fields reads length-prefixed strings off the front of a spool entry.
type fields []byte

func (f *fields) next() (string, error) {
	b := *f
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", errShort
	}
	s := string(b[k : k+int(n)])
	*f = b[k+int(n):]
	return s, nil
}

func decodeV2(b []byte) (meshmon.Message, error) {
	var m meshmon.Message
	if len(b) == 0 {
		return m, fmt.Errorf("stream: %w", errShort)
	}
	m.Stream = meshmon.Stream(b[0])
	f := fields(b[1:])
	var err error
	for _, p := range [...]struct {
		name string
		to   *string
	}{{"site", &m.Site}, {"device", &m.Device}, {"kind", &m.Kind}} {
		if *p.to, err = f.next(); err != nil {
			return m, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	ns, k := binary.Varint(f)
	if k <= 0 {
		return m, fmt.Errorf("time: %w", errShort)
	}
	if ns != 0 {
		m.Time = time.Unix(0, ns).UTC()
	}
	f = f[k:]
	if m.ID, err = f.next(); err != nil {
		return m, fmt.Errorf("id: %w", err)
	}
	m.Data = append([]byte(nil), f...)
	return m, nil
}

// decodeV1 reads an entry of codec version 1 (subject | id | data) into the
// typed fields: the subject's tokens, and the time of the event or sample
// that is the payload. It is the one place that parses a subject, for
// entries spooled before the upgrade.
func decodeV1(b []byte) (meshmon.Message, error) {
	var m meshmon.Message
	f := fields(b)
	subject, err := f.next()
	if err != nil {
		return m, fmt.Errorf("subject: %w", err)
	}
	if m.ID, err = f.next(); err != nil {
		return m, fmt.Errorf("id: %w", err)
	}
	m.Data = append([]byte(nil), f...)
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) != 4 {
		return m, fmt.Errorf("subject %q: not <ev|mx>.<site>.<device>.<kind>", subject)
	}
	switch parts[0] {
	case "ev":
		m.Stream = meshmon.StreamEvents
	case "mx":
		m.Stream = meshmon.StreamMetrics
	default:
		return m, fmt.Errorf("subject %q: not <ev|mx>.<site>.<device>.<kind>", subject)
	}
	m.Site, m.Device, m.Kind = parts[1], parts[2], parts[3]
	// A payload without a time (or not JSON) leaves Time zero: the message
	// is still published, only the poller group's fence cannot judge it.
	var obs struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(m.Data, &obs) == nil {
		m.Time = spoolTime(obs.Time)
	}
	return m, nil
}

// spoolTime is t as version 2 keeps it: in UTC, and zero when t is zero
// or outside what Unix nanoseconds hold (years 1678 to 2262), or is the
// Unix epoch itself, which stands for zero.
func spoolTime(t time.Time) time.Time {
	ns := t.UnixNano()
	if t.IsZero() || ns == 0 || !time.Unix(0, ns).Equal(t) {
		return time.Time{}
	}
	return t.UTC()
}
