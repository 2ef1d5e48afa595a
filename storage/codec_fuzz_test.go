package storage

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// FuzzDecodeMessage reads spool entries as Peek does from the bbolt file
// on disk (which a crash, a full disk or another program may have
// damaged), of any codec version: a decoded entry owns its bytes
// (bbolt's memory map is only valid inside the transaction), a version 2
// entry encodes to no more than it was read from, and every decoded entry
// encodes (as version 2 or 3) and decodes again to itself.
func FuzzDecodeMessage(f *testing.F) {
	at := time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)
	for _, m := range []meshmon.Message{
		{},
		{Stream: meshmon.StreamEvents, Site: "paris", Device: "r1", Kind: meshmon.KindNodeDown, Time: at,
			ID: meshmon.MsgID("acme", "paris", "r1", "icmp", at), Data: []byte(`{"specversion":"1.0","time":"2026-12-02T19:00:00Z"}`)},
		{Stream: meshmon.StreamMetrics, Site: "s", Device: "d", Kind: "if", ID: "x", Data: []byte{0, 1, 0xff, 0}},
		{Stream: meshmon.StreamEvents, Site: "größe", Device: "ü", ID: "ä", Data: []byte("€")},
	} {
		f.Add(encodeMessage(m))
		f.Add(encodeV2(m))
		if m.Stream != 0 {
			f.Add(encodeV1(m))
		}
	}
	f.Add([]byte{codecV1, 0x80, 0x00, 0x00})                                                 // non-minimal varint
	f.Add([]byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // varint overflow
	f.Add([]byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'})        // length near 2^63
	f.Add(append([]byte{codecV1, 7, 'e', 'v', '.', 'a', '.', 'b', '.', 0}, `{"time":"9999-01-01T00:00:00Z"}`...))
	f.Add([]byte{codecV2, 1, 0x80, 0x00, 0, 0, 0, 0})                                           // non-minimal varint
	f.Add([]byte{codecV2, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}) // time near 2^63
	f.Add([]byte{codecV2, 9, 0, 0, 0, 0, 0})                                                    // unknown stream
	f.Add([]byte{codecV3, 1, 0, 0, 0, 0, 0, 0x00})                                              // block of nothing
	f.Add([]byte{codecV3, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})                      // block of 4 GiB
	f.Add(encodeMessage(meshmon.Message{Stream: meshmon.StreamEvents, Data: bytes.Repeat([]byte("ab"), 400)}))
	f.Add([]byte{9, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		m, err := decodeMessage(in)
		if err != nil {
			return
		}
		want := m
		want.Data = bytes.Clone(m.Data)
		for i := range in {
			in[i] ^= 0xff // bbolt reuses the page; the message must not change
		}
		if !sameMsg(m, want) {
			t.Fatalf("decoded message shares the input's memory")
		}
		enc := encodeMessage(m)
		if b[0] == codecV2 && len(enc) > len(b) {
			t.Fatalf("%x decoded to %+v, which encodes longer: %x", b, m, enc)
		}
		back, err := decodeMessage(enc)
		if err != nil || !sameMsg(back, m) {
			t.Fatalf("%+v encoded %x decodes to %+v, %v", m, enc, back, err)
		}
	})
}
