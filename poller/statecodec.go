package poller

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A device's check states and interface counters are stored in a compact
// binary form: every poll reads them and writes the counters, and the
// store's pages they fill are resident in the poller's memory (bbolt maps
// its file). As JSON they took about 690 bytes a device (counters of four
// interfaces 335, five check states of 71); binary, about a third of that.
// A store written by an earlier release holds JSON, which is read as
// before: a JSON value starts with '{', a binary one with its version.
const stateCodecV1 = 1

var errStateTruncated = errors.New("truncated state")

// encodeState encodes a state as it is stored: check states and counters
// binary, anything else (the uptime view) as JSON.
func encodeState(v any) ([]byte, error) {
	switch v := v.(type) {
	case checkState:
		return encodeCheck(v), nil
	case map[int]counterState:
		return encodeCounters(v), nil
	}
	return json.Marshal(v)
}

// encodeCounters encodes the counters of one poll: they share its time.
func encodeCounters(m map[int]counterState) []byte {
	idx := make([]int, 0, len(m))
	var at time.Time
	for i, c := range m {
		idx = append(idx, i)
		at = c.At
	}
	slices.Sort(idx)
	b := make([]byte, 0, 12+len(m)*16)
	b = append(b, stateCodecV1)
	b = appendTime(b, at)
	b = binary.AppendUvarint(b, uint64(len(m)))
	for _, i := range idx {
		c := m[i]
		hc := byte(0)
		if c.HC {
			hc = 1
		}
		b = binary.AppendVarint(b, int64(i))
		b = append(b, hc)
		b = binary.AppendUvarint(b, c.In)
		b = binary.AppendUvarint(b, c.Out)
		if !c.At.Equal(at) {
			// Not of one poll: kept whole, each with its own time.
			return mustJSON(m)
		}
	}
	return b
}

func decodeCounters(b []byte, m *map[int]counterState) error {
	if isJSON(b) {
		return json.Unmarshal(b, m)
	}
	r := stateReader{b: b}
	r.version()
	at := r.time()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(b)) {
		r.err = errStateTruncated
	}
	out := make(map[int]counterState, min(n, 64))
	for range n {
		if r.err != nil {
			break
		}
		i := int(r.varint())
		hc := r.byte() == 1
		in, outOctets := r.uvarint(), r.uvarint()
		out[i] = counterState{In: in, Out: outOctets, HC: hc, At: at}
	}
	if err := r.done(); err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	*m = out
	return nil
}

// encodeCheck encodes one check's state.
func encodeCheck(s checkState) []byte {
	b := make([]byte, 0, 32+len(s.Reason))
	b = append(b, stateCodecV1)
	b = appendString(b, s.State)
	b = appendString(b, s.Reported)
	b = appendString(b, s.Pending)
	b = binary.AppendVarint(b, int64(s.Count))
	b = binary.AppendUvarint(b, uint64(len(s.Changes)))
	for _, t := range s.Changes {
		b = appendTime(b, t)
	}
	flapping := byte(0)
	if s.Flapping {
		flapping = 1
	}
	b = append(b, flapping)
	b = appendTime(b, s.Since)
	return appendString(b, s.Reason)
}

func decodeCheck(b []byte, s *checkState) error {
	if isJSON(b) {
		return json.Unmarshal(b, s)
	}
	r := stateReader{b: b}
	r.version()
	var out checkState
	out.State, out.Reported, out.Pending = r.string(), r.string(), r.string()
	out.Count = int(r.varint())
	n := r.uvarint()
	if r.err == nil && n > uint64(len(b)) {
		r.err = errStateTruncated
	}
	for range n {
		if r.err != nil {
			break
		}
		out.Changes = append(out.Changes, r.time())
	}
	out.Flapping = r.byte() == 1
	out.Since = r.time()
	out.Reason = r.string()
	if err := r.done(); err != nil {
		return fmt.Errorf("check state: %w", err)
	}
	*s = out
	return nil
}

func isJSON(b []byte) bool { return len(b) > 0 && b[0] == '{' }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v) // plain fields: cannot fail
	return b
}

// appendTime appends t as nanoseconds since 1970, 0 for the zero time.
// Times come back in UTC, without a monotonic reading, as from JSON.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// stateReader reads a binary state; its first error sticks.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) version() {
	if v := r.byte(); r.err == nil && v != stateCodecV1 {
		r.err = fmt.Errorf("unknown state encoding %d", v)
	}
}

func (r *stateReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errStateTruncated
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *stateReader) uvarint() uint64 { return readNum(r, binary.Uvarint) }

func (r *stateReader) varint() int64 { return readNum(r, binary.Varint) }

// readNum reads one varint with read (binary.Uvarint or binary.Varint).
func readNum[T uint64 | int64](r *stateReader, read func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := read(r.b)
	if n <= 0 {
		r.err = errStateTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) time() time.Time {
	ns := r.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func (r *stateReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errStateTruncated
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *stateReader) done() error {
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%d bytes past its end", len(r.b))
	}
	return r.err
}
