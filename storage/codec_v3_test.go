package storage

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestEncodeCompresses: the JSON of an event is spooled compressed (codec
// version 3); data that does not shrink, or is too short to, as version 2.
func TestEncodeCompresses(t *testing.T) {
	noise := make([]byte, 512)
	_, _ = rand.Read(noise)
	json := sizeEvent(newSizeRand(), 1, "json")
	tests := []struct {
		name    string
		m       meshmon.Message
		version byte
	}{
		{"event JSON", json, codecV3},
		{"random bytes", meshmon.Message{Stream: meshmon.StreamEvents, ID: "r", Data: noise}, codecV2},
		{"short", msg(3), codecV2},
		{"empty", meshmon.Message{Stream: meshmon.StreamMetrics, ID: "e"}, codecV2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeMessage(tt.m)
			if b[0] != tt.version {
				t.Fatalf("encoded as version %d, want %d", b[0], tt.version)
			}
			if old := encodeV2(tt.m); len(b) > len(old) {
				t.Fatalf("encoded to %d bytes, version 2 takes %d", len(b), len(old))
			}
			got, err := decodeMessage(b)
			if err != nil || !sameMsg(got, tt.m) {
				t.Fatalf("round trip = %+v, %v; want %+v", got, err, tt.m)
			}
		})
	}
}

func TestDecodeV3RejectsDamage(t *testing.T) {
	good := encodeMessage(sizeEvent(newSizeRand(), 1, "json"))
	huge := append([]byte{codecV3, 1, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f) // says 4 GiB
	tests := []struct {
		name string
		b    []byte
	}{
		{"no stream", []byte{codecV3}},
		{"no block", []byte{codecV3, 1, 0, 0, 0, 0, 0}},
		{"not a block", append([]byte{codecV3, 1, 0, 0, 0, 0, 0}, "not s2 at all"...)},
		{"truncated block", good[:len(good)-20]},
		{"past the size limit", huge},
		{"block of nothing", []byte{codecV3, 1, 0, 0, 0, 0, 0, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := decodeMessage(tt.b); err == nil {
				t.Fatalf("decode(%x) = %+v, want an error", tt.b, m)
			}
		})
	}
}

// TestSpoolReadsLegacyFile: a poller upgraded with a spool written by the
// release before (version 2 entries on 4 KiB pages, half-filled) publishes
// it all, in order, before what it spools itself, and acknowledges it
// entry by entry.
func TestSpoolReadsLegacyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	old, err := Open(path, Options{legacySpool: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := newSizeRand()
	var want []meshmon.Message
	for i := range 300 {
		m := sizeEvent(rng, i, "json")
		want = append(want, m)
		if err := old.Commit([]meshmon.Message{m}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db := openT(t, path, Options{})
	var batch []meshmon.Message
	for i := 300; i < 600; i++ {
		batch = append(batch, sizeEvent(rng, i, "json"))
	}
	if err := db.Commit(batch, nil); err != nil {
		t.Fatal(err)
	}
	want = append(want, batch...)
	es := peekAll(t, db)
	if len(es) != len(want) {
		t.Fatalf("spool holds %d entries, want %d", len(es), len(want))
	}
	for i, e := range es {
		if !sameMsg(e.Msg, want[i]) {
			t.Fatalf("entry %d (seq %d) = %s, want %s", i, e.Seq, e.Msg.ID, want[i].ID)
		}
		if i > 0 && e.Seq <= es[i-1].Seq {
			t.Fatalf("entry %d has seq %d after %d", i, e.Seq, es[i-1].Seq)
		}
	}
	for _, upTo := range []uint64{es[150].Seq, es[299].Seq, es[450].Seq, es[599].Seq} {
		if err := db.Ack(upTo); err != nil {
			t.Fatal(err)
		}
		rest := peekAll(t, db)
		n, size, err := db.SpoolStats()
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		for _, e := range rest {
			if e.Seq <= es[299].Seq {
				bytes += int64(len(encodeV2(e.Msg)))
			} else {
				bytes += int64(len(encodeMessage(e.Msg)))
			}
		}
		if n != len(rest) || size != bytes {
			t.Fatalf("after Ack(%d): SpoolStats = %d, %d; spool holds %d entries, %d bytes", upTo, n, size, len(rest), bytes)
		}
		if len(rest) > 0 && rest[0].Seq != upTo+1 {
			t.Fatalf("after Ack(%d) the spool starts at %d", upTo, rest[0].Seq)
		}
	}
	if n, _, _ := db.SpoolStats(); n != 0 {
		t.Fatalf("%d entries left after acknowledging all", n)
	}
}
