package storage

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// benchCommit is what a poller worker commits per poll: one 512-byte event
// and the check's new state.
func benchCommit(i int64) ([]meshmon.Message, []StateUpdate) {
	dev := fmt.Sprintf("dev%d", i%1000)
	return []meshmon.Message{{
			Stream: meshmon.StreamEvents, Site: "site", Device: dev, Kind: meshmon.KindNodeDown,
			Time: benchTime.Add(time.Duration(i) * time.Second),
			ID:   fmt.Sprintf("%032x", i),
			Data: benchData,
		}}, []StateUpdate{{
			Device: dev, Check: "icmp", Value: []byte("down"),
		}}
}

var (
	benchData = make([]byte, 512)
	benchTime = time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
)

func BenchmarkCommitSerial(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "p.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		i++
		if err := db.Commit(benchCommit(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func BenchmarkCommitParallel(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "p.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	b.SetParallelism(8) // 8 workers per CPU: pollers run many more workers than cores
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.Commit(benchCommit(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkPutDevices caches a group's first assignment of 100,000
// devices, in the order the assignment lists them (not by name), in an
// empty cache, as a poller does at its start: one PutDevices.
//
// 2026-12-05, quiet machine, three runs each: put in the list's order,
// 4.86 to 4.90 s (bbolt's node.put shifts the leaf's growing slice of keys
// at each insert, a quadratic memmove: all of a poller's CPU for about 5 s
// at its start, while its first polls waited); sorted by name, 0.24 to
// 0.25 s.
func BenchmarkPutDevices(b *testing.B) {
	const n = 100_000
	devs := make([]meshmon.Device, n)
	for i := range devs {
		// A name's place in the list is not its place by name.
		devs[i] = meshmon.Device{Name: fmt.Sprintf("dev-%06d", (i*7919)%n), Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP},
			Interval: meshmon.Duration(time.Minute), SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "public"}}
	}
	for b.Loop() {
		b.StopTimer()
		db := openT(b, filepath.Join(b.TempDir(), "p.db"), Options{})
		b.StartTimer()
		if err := db.PutDevices(devs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "devices/op")
}
