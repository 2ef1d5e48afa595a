package storage

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

func openT(t testing.TB, path string, opt Options) *DB {
	t.Helper()
	db, err := Open(path, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func msg(i int) meshmon.Message {
	return meshmon.Message{
		Stream: meshmon.StreamEvents, Site: "site", Device: fmt.Sprintf("dev%d", i), Kind: meshmon.KindNodeDown,
		Time: time.Date(2026, 12, 3, 7, 0, i, 0, time.UTC),
		ID:   fmt.Sprintf("id-%d", i),
		Data: []byte(fmt.Sprintf(`{"n":%d}`, i)),
	}
}

// sameMsg reports whether a and b are the same message, field by field.
func sameMsg(a, b meshmon.Message) bool {
	return a.Stream == b.Stream && a.Site == b.Site && a.Device == b.Device && a.Kind == b.Kind &&
		a.Time.Equal(b.Time) && a.ID == b.ID && bytes.Equal(a.Data, b.Data)
}

func peekAll(t *testing.T, db *DB) []Entry {
	t.Helper()
	es, err := db.Peek(1 << 30)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return es
}

func checkStats(t *testing.T, db *DB) {
	t.Helper()
	n, size, err := db.SpoolStats()
	if err != nil {
		t.Fatalf("SpoolStats: %v", err)
	}
	es := peekAll(t, db)
	var want int64
	for _, e := range es {
		want += int64(len(encodeMessage(e.Msg)))
	}
	if n != len(es) || size != want {
		t.Fatalf("SpoolStats = %d entries, %d bytes; the spool holds %d entries, %d bytes", n, size, len(es), want)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	tests := []struct {
		name string
		m    meshmon.Message
	}{
		{"empty", meshmon.Message{}},
		{"typical", msg(7)},
		{"binary data", meshmon.Message{Stream: meshmon.StreamMetrics, Site: "s", Device: "d", Kind: "if", ID: "x", Data: []byte{0, 1, 0xff, 0}}},
		{"unicode", meshmon.Message{Stream: meshmon.StreamEvents, Site: "größe", Device: "ü", ID: "ä", Data: []byte("€")}},
		{"long fields", meshmon.Message{Stream: meshmon.StreamEvents, Site: strings.Repeat("a", 300), Device: strings.Repeat("c", 200), Kind: strings.Repeat("d", 130), ID: strings.Repeat("b", 200)}},
		{"large data", meshmon.Message{Stream: meshmon.StreamEvents, Device: "s", ID: "i", Data: big}},
		{"before 1970", meshmon.Message{Stream: meshmon.StreamMetrics, Time: time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC), ID: "moon"}},
		{"unknown stream", meshmon.Message{Stream: 7, Site: "s", ID: "i"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMessage(encodeMessage(tt.m))
			if err != nil {
				t.Fatal(err)
			}
			if !sameMsg(got, tt.m) {
				t.Fatalf("round trip = %+v, want %+v", got, tt.m)
			}
		})
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{9, 0, 0}},
		{"v1: no subject length", []byte{codecV1}},
		{"v1: subject past end", []byte{codecV1, 5, 'a'}},
		{"v1: id past end", []byte{codecV1, 1, 'a', 9}},
		{"v1: varint overflow", []byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"v1: subject of no stream", append([]byte{codecV1, 9}, "ctl.a.b.c\x01i"...)},
		{"v1: subject of three tokens", append([]byte{codecV1, 7}, "ev.a.bc\x01i"...)},
		{"v2: no stream", []byte{codecV2}},
		{"v2: no site length", []byte{codecV2, 1}},
		{"v2: site past end", []byte{codecV2, 1, 5, 'a'}},
		{"v2: device past end", []byte{codecV2, 1, 1, 'a', 3}},
		{"v2: no time", []byte{codecV2, 1, 0, 0, 0}},
		{"v2: time overflow", []byte{codecV2, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"v2: id past end", []byte{codecV2, 1, 0, 0, 0, 0, 4, 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := decodeMessage(tt.b); err == nil {
				t.Fatalf("decode(%x) = %+v, want an error", tt.b, m)
			}
		})
	}
}

// encodeV1 lays out m as codec version 1 did (subject | id | data): the
// entries a poller spooled before the upgrade.
func encodeV1(m meshmon.Message) []byte {
	b := []byte{codecV1}
	b = binary.AppendUvarint(b, uint64(len(m.Subject())))
	b = append(b, m.Subject()...)
	b = binary.AppendUvarint(b, uint64(len(m.ID)))
	b = append(b, m.ID...)
	return append(b, m.Data...)
}

// TestDecodeV1: an entry of codec version 1 decodes to the typed fields,
// its time read from the event or sample it carries.
func TestDecodeV1(t *testing.T) {
	at := time.Date(2026, 12, 2, 19, 0, 0, 123, time.UTC)
	ev, _ := json.Marshal(meshmon.Event{SpecVersion: "1.0", ID: "e1", Time: at, Data: meshmon.EventData{Kind: meshmon.KindIfDown}})
	sample, _ := json.Marshal(meshmon.Sample{Time: at, Check: "if"})
	for _, tt := range []struct {
		name string
		m    meshmon.Message
	}{
		{"event", meshmon.Message{Stream: meshmon.StreamEvents, Site: "paris", Device: "r1", Kind: meshmon.KindIfDown, Time: at, ID: "e1", Data: ev}},
		{"sample", meshmon.Message{Stream: meshmon.StreamMetrics, Site: "paris", Device: "r1", Kind: "if", Time: at, ID: "s1", Data: sample}},
		{"payload without a time", meshmon.Message{Stream: meshmon.StreamEvents, Site: "s", Device: "d", Kind: "k", ID: "x", Data: []byte{0, 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMessage(encodeV1(tt.m))
			if err != nil || !sameMsg(got, tt.m) {
				t.Fatalf("decode v1 = %+v, %v; want %+v", got, err, tt.m)
			}
		})
	}
}

// TestSpoolUpgrade: a spool written before the upgrade (codec version 1)
// is read whole after it, in order, beside newer entries, and drains.
func TestSpoolUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "poller.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Commit([]meshmon.Message{msg(0), msg(1), msg(2)}, nil); err != nil {
		t.Fatal(err)
	}
	// Entries 0 and 1 as the old version wrote them (with the counters of
	// their size).
	old := map[int]bool{0: true, 1: true}
	err = db.update(func(tx *bolt.Tx) error {
		spool, meta := tx.Bucket(bucketSpool), tx.Bucket(bucketMeta)
		c := spool.Cursor()
		size := int64(getUint(meta, keySpoolBytes))
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if old[i] {
				b := encodeV1(msg(i))
				size += int64(len(b) - len(v))
				if err := spool.Put(k, b); err != nil {
					return err
				}
			}
			i++
		}
		return putCounters(meta, getUint(meta, keySpoolN), size)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openT(t, path, Options{})
	es := peekAll(t, db)
	if len(es) != 3 {
		t.Fatalf("%d entries after the upgrade, want 3", len(es))
	}
	for i, e := range es {
		want := msg(i)
		if old[i] {
			want.Time = time.Time{} // its payload has no time
		}
		if !sameMsg(e.Msg, want) {
			t.Fatalf("entry %d = %+v, want %+v", i, e.Msg, want)
		}
	}
	if err := db.Ack(es[2].Seq); err != nil {
		t.Fatal(err)
	}
	if n, size, err := db.SpoolStats(); err != nil || n != 0 || size != 0 {
		t.Fatalf("after the ack: %d entries, %d bytes, %v; want an empty spool", n, size, err)
	}
}

func TestSpoolOrderAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "poller.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	if err := db.Commit([]meshmon.Message{msg(0), msg(1)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit([]meshmon.Message{msg(2)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openT(t, path, Options{})
	if err := db.Commit([]meshmon.Message{msg(3), msg(4)}, nil); err != nil {
		t.Fatal(err)
	}
	es := peekAll(t, db)
	if len(es) != 5 {
		t.Fatalf("Peek: %d entries, want 5", len(es))
	}
	for i, e := range es {
		if !sameMsg(e.Msg, msg(i)) {
			t.Fatalf("entry %d = %+v, want %+v", i, e.Msg, msg(i))
		}
		if i > 0 && e.Seq <= es[i-1].Seq {
			t.Fatalf("seq %d after %d: not increasing", e.Seq, es[i-1].Seq)
		}
	}
	checkStats(t, db)

	first2, err := db.Peek(2)
	if err != nil || len(first2) != 2 || first2[1].Seq != es[1].Seq {
		t.Fatalf("Peek(2) = %+v, %v; want the two oldest", first2, err)
	}
	if next2, err := db.PeekAfter(es[1].Seq, 2); err != nil || len(next2) != 2 || next2[0].Seq != es[2].Seq || next2[1].Seq != es[3].Seq {
		t.Fatalf("PeekAfter(%d, 2) = %+v, %v; want the third and fourth", es[1].Seq, next2, err)
	}
	if none, err := db.PeekAfter(es[4].Seq, 2); err != nil || len(none) != 0 {
		t.Fatalf("PeekAfter the newest = %+v, %v; want nothing", none, err)
	}
	if err := db.Ack(es[1].Seq); err != nil {
		t.Fatal(err)
	}
	if got := peekAll(t, db); len(got) != 3 || got[0].Seq != es[2].Seq {
		t.Fatalf("after Ack(%d): %+v", es[1].Seq, got)
	}
	checkStats(t, db)

	if err := db.Drop(es[3].Seq); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop(es[3].Seq); err != nil {
		t.Fatalf("second Drop: %v", err)
	}
	if got := peekAll(t, db); len(got) != 2 || got[0].Seq != es[2].Seq || got[1].Seq != es[4].Seq {
		t.Fatalf("after Drop(%d): %+v", es[3].Seq, got)
	}
	checkStats(t, db)

	// Ack everything, reopen: sequence numbers keep increasing.
	if err := db.Ack(es[4].Seq); err != nil {
		t.Fatal(err)
	}
	checkStats(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, path, Options{})
	if err := db.Commit([]meshmon.Message{msg(5)}, nil); err != nil {
		t.Fatal(err)
	}
	got := peekAll(t, db)
	if len(got) != 1 || got[0].Seq <= es[4].Seq {
		t.Fatalf("after reopen: %+v; want one entry with seq > %d", got, es[4].Seq)
	}
	checkStats(t, db)
}

func TestPeekNonPositive(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	if err := db.Commit([]meshmon.Message{msg(0)}, nil); err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{0, -1} {
		if es, err := db.Peek(max); err != nil || len(es) != 0 {
			t.Fatalf("Peek(%d) = %v, %v; want nothing", max, es, err)
		}
	}
}

func TestCommitAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db := openT(t, path, Options{MaxSpoolBytes: 200})
	err := db.Commit([]meshmon.Message{msg(0)}, []StateUpdate{
		{Device: "r1", Check: "icmp", Value: []byte("down")},
		{Device: "r1", Check: "if.1", Value: []byte("up")},
		{Device: "r2", Check: "icmp", Value: []byte{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := db.State("r1", "icmp"); err != nil || !ok || string(v) != "down" {
		t.Fatalf("State(r1, icmp) = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := db.State("r2", "icmp"); err != nil || !ok || len(v) != 0 {
		t.Fatalf("State(r2, icmp) = %q, %v, %v; want an empty value", v, ok, err)
	}

	// A refused commit writes neither its messages nor its states.
	noise := make([]byte, 300) // incompressible: the spool limit counts compressed bytes
	_, _ = rand.Read(noise)
	big := meshmon.Message{Stream: meshmon.StreamEvents, Device: "s", ID: "big", Data: noise}
	err = db.Commit([]meshmon.Message{big}, []StateUpdate{
		{Device: "r1", Check: "icmp", Value: []byte("up")},
		{Device: "r3", Check: "icmp", Value: []byte("up")},
	})
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("Commit past the limit: %v, want ErrSpoolFull", err)
	}
	if v, _, _ := db.State("r1", "icmp"); string(v) != "down" {
		t.Fatalf("refused commit changed state r1/icmp to %q", v)
	}
	if _, ok, _ := db.State("r3", "icmp"); ok {
		t.Fatal("refused commit wrote state r3/icmp")
	}
	if es := peekAll(t, db); len(es) != 1 {
		t.Fatalf("refused commit left %d entries, want 1", len(es))
	}

	// nil deletes; states-only commits are fine.
	if err := db.Commit(nil, []StateUpdate{{Device: "r1", Check: "icmp"}, {Device: "nope", Check: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.State("r1", "icmp"); ok {
		t.Fatal("nil Value did not delete r1/icmp")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, path, Options{})
	st, err := db.States("r1")
	if err != nil || len(st) != 1 || string(st["if.1"]) != "up" {
		t.Fatalf("States(r1) after reopen = %q, %v", st, err)
	}
	if err := db.DeleteStates("r1"); err != nil {
		t.Fatal(err)
	}
	if st, err := db.States("r1"); err != nil || len(st) != 0 {
		t.Fatalf("States after DeleteStates = %q, %v", st, err)
	}
	if err := db.DeleteStates("never-seen"); err != nil {
		t.Fatal(err)
	}
}

func TestCommitRejectsBadStateKeys(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	tests := []StateUpdate{
		{Device: "", Check: "icmp", Value: []byte("x")},
		{Device: "r1", Check: "", Value: []byte("x")},
		{Device: strings.Repeat("d", 40000), Check: "icmp", Value: []byte("x")},
	}
	for _, s := range tests {
		if err := db.Commit([]meshmon.Message{msg(0)}, []StateUpdate{s}); err == nil {
			t.Errorf("Commit with state %.20q/%q: no error", s.Device, s.Check)
		}
	}
	if es := peekAll(t, db); len(es) != 0 {
		t.Fatalf("rejected commits spooled %d entries", len(es))
	}
}

func TestSpoolFullAndRecovery(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{MaxSpoolBytes: 1000})
	var err error
	var committed int
	for i := 0; i < 1000; i++ {
		if err = db.Commit([]meshmon.Message{msg(i)}, []StateUpdate{{Device: "d", Check: "c", Value: []byte{byte(i)}}}); err != nil {
			break
		}
		committed++
	}
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("filling the spool: %v, want ErrSpoolFull", err)
	}
	if !strings.Contains(err.Error(), db.Path()) {
		t.Errorf("error %q does not name the file", err)
	}
	_, size, _ := db.SpoolStats()
	if size > 1000 {
		t.Fatalf("spool holds %d bytes, past the 1000 limit", size)
	}
	es := peekAll(t, db)
	if len(es) != committed {
		t.Fatalf("%d entries after %d good commits", len(es), committed)
	}
	if v, _, _ := db.State("d", "c"); v[0] != byte(committed-1) {
		t.Fatalf("state = %d, want %d (the last good commit)", v[0], committed-1)
	}
	if err := db.Ack(es[len(es)/2].Seq); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit([]meshmon.Message{msg(9999)}, nil); err != nil {
		t.Fatalf("Commit after Ack: %v", err)
	}
	checkStats(t, db)
}

func TestCommitConcurrent(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	const workers, per = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				m := meshmon.Message{Stream: meshmon.StreamEvents, Device: fmt.Sprintf("w%d", w), ID: fmt.Sprint(i)}
				st := []StateUpdate{{Device: fmt.Sprintf("w%d", w), Check: "n", Value: []byte(fmt.Sprint(i))}}
				if err := db.Commit([]meshmon.Message{m}, st); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	es := peekAll(t, db)
	if len(es) != workers*per {
		t.Fatalf("%d entries, want %d", len(es), workers*per)
	}
	next := map[string]int{}
	for i, e := range es {
		if i > 0 && e.Seq <= es[i-1].Seq {
			t.Fatalf("seq %d after %d", e.Seq, es[i-1].Seq)
		}
		if e.Msg.ID != fmt.Sprint(next[e.Msg.Device]) {
			t.Fatalf("worker %s: entry %s out of order, want %d", e.Msg.Device, e.Msg.ID, next[e.Msg.Device])
		}
		next[e.Msg.Device]++
	}
	for w := 0; w < workers; w++ {
		if v, _, _ := db.State(fmt.Sprintf("w%d", w), "n"); string(v) != fmt.Sprint(per-1) {
			t.Fatalf("worker %d state = %q", w, v)
		}
	}
	checkStats(t, db)
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	openT(t, path, Options{})
	db2, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		db2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
}

func TestOpenCorrupt(t *testing.T) {
	garbage := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"one byte", []byte{1}},
		{"text", []byte("this is not a bbolt file\n")},
		{"random page", garbage(4096)},
		{"random pages", garbage(64 << 10)},
		{"zeros", make([]byte, 32<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, Options{})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
		})
	}
}

// TestDamagedPages overwrites everything but the meta pages of a good file:
// Open succeeds, and reading must fail with ErrCorrupt, not crash.
func TestDamagedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db := openT(t, path, Options{})
	var msgs []meshmon.Message
	for i := 0; i < 500; i++ {
		msgs = append(msgs, msg(i))
	}
	if err := db.Commit(msgs, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	page := int64(filePageSize)
	junk := make([]byte, fi.Size()-2*page)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	if _, err := f.WriteAt(junk, 2*page); err != nil {
		t.Fatal(err)
	}
	f.Close()

	db, err = Open(path, Options{})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want nil or ErrCorrupt", err)
		}
		t.Logf("Open: %v", err)
		return
	}
	defer db.Close()
	_, err = db.Peek(10)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Peek on damaged pages: %v, want ErrCorrupt", err)
	}
	t.Logf("Peek: %v", err)
}

func TestOpenNotWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A path under a regular file can never be created, root or not.
	path := filepath.Join(file, "p.db")
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open under a file: %v; want an error naming %s", err, path)
	}
	if os.Geteuid() == 0 {
		return // root ignores permission bits
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(ro, "p.db"), Options{})
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Open in a read-only directory: %v; want a not-writable error", err)
	}
}

func TestDevices(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	devs := []meshmon.Device{
		{Name: "sw-2", Address: "10.0.0.2", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Minute)},
		{Name: "r-1", Address: "10.0.0.1", Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(30 * time.Second),
			SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "public"}},
		{Name: "a", Address: "h.example", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Second)},
	}
	for _, d := range devs {
		if err := db.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	devs[0].Address = "10.0.0.20"
	if err := db.PutDevice(devs[0]); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDevice("a"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDevice("missing"); err != nil {
		t.Fatal(err)
	}
	got, err := db.Devices()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, d := range got {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{"r-1", "sw-2"}) {
		t.Fatalf("Devices = %v, want [r-1 sw-2]", names)
	}
	if got[1].Address != "10.0.0.20" || got[0].SNMP == nil || got[0].SNMP.Community != "public" || got[0].Interval.D() != 30*time.Second {
		t.Fatalf("Devices = %+v", got)
	}
	if err := db.PutDevice(meshmon.Device{}); err == nil {
		t.Fatal("PutDevice without a name: no error")
	}
}

func TestCloseIdempotentAndNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	db, err := Open(filepath.Join(t.TempDir(), "p.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := db.Commit([]meshmon.Message{msg(i)}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]error{
		"Commit":       db.Commit([]meshmon.Message{msg(0)}, nil),
		"Ack":          db.Ack(1),
		"Drop":         db.Drop(1),
		"PutDevice":    db.PutDevice(meshmon.Device{Name: "x"}),
		"DeleteStates": db.DeleteStates("x"),
	}
	_, err = db.Peek(1)
	calls["Peek"] = err
	_, _, err = db.SpoolStats()
	calls["SpoolStats"] = err
	_, err = db.Devices()
	calls["Devices"] = err
	_, _, err = db.State("d", "c")
	calls["State"] = err
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	// Goroutines of the test's workers may still be exiting: poll.
	eventually.NoError(t, 5*time.Second, "the goroutines of before Open only", func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

func TestInstanceIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.Instance()
	if err != nil || len(id) != 16 {
		t.Fatalf("instance %q, %v", id, err)
	}
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if again, err := db.Instance(); err != nil || again != id {
		t.Fatalf("after reopen: %q, %v; want %q", again, err, id)
	}
	other, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if oid, _ := other.Instance(); oid == id {
		t.Fatal("two files share an instance id")
	}
}

// TestAckBesideCommits: acks written in the same group commits as
// concurrent Commits delete exactly the entries up to their Seq, and the
// spool's count and size stay those of what is left.
func TestAckBesideCommits(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "poller.db"), Options{})
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := db.Commit([]meshmon.Message{msg(w*each + i)}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Ack what is spooled, a few entries at a time, while they write.
	acked := uint64(0)
	for range 300 {
		es, err := db.PeekAfter(acked, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			continue
		}
		acked = es[len(es)-1].Seq
		if err := db.Ack(acked); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	left := peekAll(t, db)
	var size int64
	for _, e := range left {
		if e.Seq <= acked {
			t.Fatalf("entry %d left after an ack up to %d", e.Seq, acked)
		}
		size += int64(len(encodeMessage(e.Msg)))
	}
	if want := writers*each - int(acked); len(left) != want {
		t.Fatalf("%d entries left, want %d (%d acked)", len(left), want, acked)
	}
	if n, got, err := db.SpoolStats(); err != nil || n != len(left) || got != size {
		t.Fatalf("spool stats %d entries, %d bytes, %v; want %d, %d", n, got, err, len(left), size)
	}
}
