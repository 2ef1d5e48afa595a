package bus

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"

	"github.com/meshmon/meshmon"
)

// An assignment is one value at GroupAssignmentKey, so that a member reads
// it whole and a deposed leader cannot overwrite a newer one (an update by
// revision). As JSON it takes about 80 bytes a device, which passes NATS's
// 1 MB message limit above some 12,000 devices; so a large one is stored
// gzipped (about 10 bytes a device: 50,000 devices in under 1 MB, see
// TestAssignmentEncodingSize), a small one as plain JSON that `nats kv get`
// shows as it is.

// assignmentPlainMax is the largest assignment stored as plain JSON.
const assignmentPlainMax = 64 << 10

// assignmentMax bounds the JSON a gzipped assignment may unpack to (some
// 800,000 devices).
const assignmentMax = 64 << 20

// EncodeAssignment is the value of a at GroupAssignmentKey: its JSON, gzipped
// when longer than 64 KiB.
func EncodeAssignment(a meshmon.Assignment) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	if len(b) <= assignmentPlainMax {
		return b, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(b) / 8)
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("poller group assignment: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeAssignment reads a value that EncodeAssignment made (or plain JSON,
// as earlier versions wrote every assignment). The revision is the
// entry's, which the caller sets.
func DecodeAssignment(b []byte) (meshmon.Assignment, error) {
	var a meshmon.Assignment
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b { // gzip's magic; JSON never starts so
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return a, fmt.Errorf("poller group assignment: %w", err)
		}
		if b, err = io.ReadAll(io.LimitReader(r, assignmentMax)); err != nil {
			return a, fmt.Errorf("poller group assignment: %w", err)
		}
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("poller group assignment: %w", err)
	}
	return a, nil
}
