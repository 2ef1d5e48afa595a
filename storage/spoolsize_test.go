package storage

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// spoolSizeEvents is the spool the figure of issue 19 was measured on:
// 30,000 spooled events of 512 B.
const spoolSizeEvents = 30000

// BenchmarkSpoolSize spools 30,000 events of 512 B with the layout of
// releases before codec version 3 (legacy) and with this one, in groups of
// 1 (one poll's event per commit) and 256 (the trap handler's batch), and
// reports the file's size per event ("file-B/event") and the blocks it
// takes on disk per event ("disk-B/event"). Payloads are either the JSON of
// trap events or random bytes (which no compression shrinks). Fsync is off
// here: it does not change where bbolt puts a page, only the time taken.
//
//	go test -run '^$' -bench SpoolSize -benchtime 1x ./storage/
func BenchmarkSpoolSize(b *testing.B) {
	for _, payload := range []string{"json", "random"} {
		for _, per := range []int{1, 256} {
			for _, legacy := range []bool{true, false} {
				name := fmt.Sprintf("%s/per-commit=%d/layout=%s", payload, per, map[bool]string{true: "v2-legacy", false: "v3"}[legacy])
				b.Run(name, func(b *testing.B) {
					var file, disk int64
					for b.Loop() {
						file, disk = spoolSize(b, payload, per, legacy)
					}
					b.ReportMetric(float64(file)/spoolSizeEvents, "file-B/event")
					b.ReportMetric(float64(disk)/spoolSizeEvents, "disk-B/event")
				})
			}
		}
	}
}

// spoolSize spools the events and returns the file's size and the bytes of
// the blocks it occupies.
func spoolSize(b *testing.B, payload string, per int, legacy bool) (file, disk int64) {
	path := filepath.Join(b.TempDir(), "spool.db")
	db, err := Open(path, Options{legacySpool: legacy})
	if err != nil {
		b.Fatal(err)
	}
	db.bolt.NoSync = true
	rng := newSizeRand()
	msgs := make([]meshmon.Message, 0, per)
	for i := range spoolSizeEvents {
		msgs = append(msgs, sizeEvent(rng, i, payload))
		if len(msgs) == per || i == spoolSizeEvents-1 {
			if err := db.Commit(msgs, nil); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	if n, _, _ := db.SpoolStats(); n != spoolSizeEvents {
		b.Fatalf("%d events spooled, want %d", n, spoolSizeEvents)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size(), diskUsage(fi)
}

// newSizeRand is the seeded source of sizeEvent: every run spools the same
// events.
func newSizeRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// sizeEvent is the i-th event: a 512-byte payload, the JSON of a trap
// event of one of 1,000 devices, or random bytes.
func sizeEvent(rng *rand.Rand, i int, payload string) meshmon.Message {
	dev := fmt.Sprintf("dev-%05d", rng.IntN(1000))
	at := benchTime.Add(time.Duration(i) * time.Millisecond)
	m := meshmon.Message{Stream: meshmon.StreamEvents, Site: "paris", Device: dev, Kind: "trap",
		Time: at, ID: fmt.Sprintf("%032x", rng.Uint64())}
	if payload == "random" {
		m.Data = make([]byte, 512)
		for j := range m.Data {
			m.Data[j] = byte(rng.Uint32())
		}
		return m
	}
	ifIndex := rng.IntN(48) + 1
	js := fmt.Sprintf(`{"id":"%s","source":"/meshmon/default/paris/poller1","type":"meshmon.trap",`+
		`"time":"%s","subject":"%s","data":{"tenant":"default","site":"paris",`+
		`"device":"%s","address":"10.0.%d.%d","kind":"trap","check":"trap","severity":"info","poller":"poller1",`+
		`"assignment":7,"trap":{"version":"2c","from":"10.0.%d.%d","oid":".1.3.6.1.6.3.1.1.5.3","uptime":%d,`+
		`"labels":{"trap":"linkDown","if_index":"%d"}},"message":"interface %d down`,
		m.ID, at.Format(time.RFC3339Nano), dev, dev, i/250, i%250, i/250, i%250, rng.Uint32(), ifIndex, ifIndex)
	m.Data = []byte(js + strings.Repeat(" ", max(512-len(js)-3, 0)) + `"}}`)
	if len(m.Data) != 512 {
		panic(fmt.Sprintf("event of %d bytes, want 512", len(m.Data)))
	}
	return m
}

// BenchmarkEncodeEvent is the CPU the spool codec costs per 512 B event
// JSON, written (encode) and read back (decode), in version 2 and 3.
func BenchmarkEncodeEvent(b *testing.B) {
	m := sizeEvent(newSizeRand(), 1, "json")
	for _, v := range []struct {
		name string
		enc  func(meshmon.Message) []byte
	}{{"v2", encodeV2}, {"v3", encodeMessage}} {
		b.Run("encode/"+v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.enc(m)
			}
		})
		b.Run("decode/"+v.name, func(b *testing.B) {
			enc := v.enc(m)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeMessage(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
