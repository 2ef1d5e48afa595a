package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/meshmon/meshmon"
)

// codecV1 is the first byte of every encoded spool entry. Bump it when the
// layout changes, and keep decoding the old one.
const codecV1 = 1

// encodeMessage lays out a message as
//
//	version(1) | uvarint len(Subject) | Subject | uvarint len(ID) | ID | Data
//
// Data runs to the end of the value, so it needs no length. This is several
// times cheaper than JSON (which would base64 the payload) and the spool is
// on the hot path of every poll.
func encodeMessage(m meshmon.Message) []byte {
	n := 1 + 2*binary.MaxVarintLen64 + len(m.Subject) + len(m.ID) + len(m.Data)
	b := make([]byte, 0, n)
	b = append(b, codecV1)
	b = binary.AppendUvarint(b, uint64(len(m.Subject)))
	b = append(b, m.Subject...)
	b = binary.AppendUvarint(b, uint64(len(m.ID)))
	b = append(b, m.ID...)
	b = append(b, m.Data...)
	return b
}

var errShort = errors.New("truncated")

// decodeMessage is the inverse of encodeMessage. It copies what it keeps,
// since b belongs to bbolt's memory map and is only valid inside the
// transaction.
func decodeMessage(b []byte) (meshmon.Message, error) {
	var m meshmon.Message
	if len(b) == 0 {
		return m, errShort
	}
	if b[0] != codecV1 {
		return m, fmt.Errorf("unknown encoding version %d", b[0])
	}
	b = b[1:]
	field := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", errShort
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var err error
	if m.Subject, err = field(); err != nil {
		return m, fmt.Errorf("subject: %w", err)
	}
	if m.ID, err = field(); err != nil {
		return m, fmt.Errorf("id: %w", err)
	}
	m.Data = append([]byte(nil), b...)
	return m, nil
}
