package poller

import (
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/storage"
)

// BenchmarkReadState reads what a poll starts from (readState) for a
// device with the SNMP check and four interfaces, as bench poll's devices
// have: six check states and the counters, from the store. Every poll pays
// it since the states are no longer kept in memory (issue 19). "binary" is
// the form a poll stores now, "json" an earlier release's:
//
//	go test -run '^$' -bench ReadState -benchmem ./poller
func BenchmarkReadState(b *testing.B) {
	for _, form := range []struct {
		name   string
		encode func(v any) []byte
	}{
		{"binary", func(v any) []byte { b, _ := encodeState(v); return b }},
		{"json", mustJSON},
	} {
		b.Run(form.name, func(b *testing.B) { benchReadState(b, form.encode) })
	}
}

func benchReadState(b *testing.B, encode func(v any) []byte) {
	store, err := storage.Open(filepath.Join(b.TempDir(), "poller.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	now := time.Now()
	up := checkState{State: stateUp, Reported: stateUp, Since: now}
	counters := map[int]counterState{}
	var ups []storage.StateUpdate
	var size int
	put := func(check string, v any) {
		j := encode(v)
		size += len(j)
		ups = append(ups, storage.StateUpdate{Device: "sw1", Check: check, Value: j})
	}
	put(meshmon.CheckSNMP, up)
	for i := 1; i <= 4; i++ {
		put("if."+strconv.Itoa(i), up)
		counters[i] = counterState{In: 118611928, Out: 46338603, HC: true, At: now}
	}
	put(keyCounters, counters)
	put(keyUptime, uptimeState{BootTime: now.Add(-time.Hour), Uptime: 360000, At: now})
	if err := store.Commit(nil, ups); err != nil {
		b.Fatal(err)
	}
	p := &Poller{store: store, log: slog.New(slog.DiscardHandler)}
	t := &target{dev: &meshmon.Device{Name: "sw1"}}
	b.ReportAllocs()
	for b.Loop() {
		if st := p.readState(t); len(st.checks) != 5 || len(st.counters) != 4 {
			b.Fatalf("read %d checks and %d counters", len(st.checks), len(st.counters))
		}
	}
	b.ReportMetric(float64(size), "stored-B")
}
