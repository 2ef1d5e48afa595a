package storage

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// FuzzDecodeMessage reads spool entries as Peek does from the bbolt file
// on disk (which a crash, a full disk or another program may have
// damaged): a decoded entry owns its bytes (bbolt's memory map is only
// valid inside the transaction), encodes to no more than it was read
// from, and decodes again to itself.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []meshmon.Message{
		{},
		{Subject: "ev.paris.r1.node_down", ID: meshmon.MsgID("acme", "paris", "r1", "icmp", time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)), Data: []byte(`{"specversion":"1.0"}`)},
		{Subject: "mx.s.d.if", ID: "x", Data: []byte{0, 1, 0xff, 0}},
		{Subject: "ev.größe.ü", ID: "ä", Data: []byte("€")},
	} {
		f.Add(encodeMessage(m))
	}
	f.Add([]byte{codecV1, 0x80, 0x00, 0x00})                                                 // non-minimal varint
	f.Add([]byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // varint overflow
	f.Add([]byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'})        // length near 2^63
	f.Add([]byte{9, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		m, err := decodeMessage(in)
		if err != nil {
			return
		}
		want := meshmon.Message{Subject: m.Subject, ID: m.ID, Data: bytes.Clone(m.Data)}
		for i := range in {
			in[i] ^= 0xff // bbolt reuses the page; the message must not change
		}
		if m.Subject != want.Subject || m.ID != want.ID || !bytes.Equal(m.Data, want.Data) {
			t.Fatalf("decoded message shares the input's memory")
		}
		enc := encodeMessage(m)
		if len(enc) > len(b) {
			t.Fatalf("%x decoded to %+v, which encodes longer: %x", b, m, enc)
		}
		back, err := decodeMessage(enc)
		if err != nil || back.Subject != m.Subject || back.ID != m.ID || !bytes.Equal(back.Data, m.Data) {
			t.Fatalf("%+v encoded %x decodes to %+v, %v", m, enc, back, err)
		}
	})
}
