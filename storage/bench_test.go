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
