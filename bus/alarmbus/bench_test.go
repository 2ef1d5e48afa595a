package alarmbus

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
)

// BenchmarkProcessor measures alarms processed per second at central: a
// storm of b.N events (devices going down, then coming back) is stored in
// EVENTS first, then a processor applies it, on a server that fsyncs every
// write. It reports events and alarm changes per second.
func BenchmarkProcessor(b *testing.B) {
	srv := startJS(b)
	_, js := dial(b, srv)
	evs := make([]meshmon.Event, 0, b.N)
	for i := 0; len(evs) < b.N; i++ {
		kind := meshmon.KindNodeDown
		if (i/5000)%2 == 1 {
			kind = meshmon.KindNodeUp
		}
		evs = append(evs, event(fmt.Sprintf("d%05d", i%5000), "", kind, "icmp"))
	}
	for i := 0; i < len(evs); i += 2000 {
		if _, err := publishEvents(js, evs[i:min(i+2000, len(evs))]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	nc, _ := dial(b, srv)
	go func() { done <- Worker(nil, 0)(ctx, nc, "") }()
	for checkpoint(js) < uint64(len(evs)) {
		select {
		case err := <-done:
			b.Fatal(err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	s, _ := js.Stream(context.Background(), alarm.Stream)
	b.ReportMetric(float64(len(evs))/el.Seconds(), "events/s")
	b.ReportMetric(float64(s.CachedInfo().State.Msgs)/el.Seconds(), "changes/s")
}

// BenchmarkList100k reads 100,000 open alarms from the alarms bucket and
// filters them (one site's critical ones), as 'meshmon alarms list --site
// S --severity critical' does.
func BenchmarkList100k(b *testing.B) {
	srv := startJS(b)
	_, js := dial(b, srv)
	ctx := context.Background()
	if err := Ensure(ctx, js, 1); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	for i := 0; i < 100000; i += 2000 {
		for j := i; j < i+2000; j++ {
			site := fmt.Sprintf("s%02d", j%50)
			a := alarm.Alarm{ID: alarm.ID(site, fmt.Sprintf("d%05d", j), "icmp"), Tenant: "acme", Site: site, Device: fmt.Sprintf("d%05d", j), Check: "icmp",
				Kind: meshmon.KindNodeDown, Severity: alarm.Severities[j%4], State: alarm.StateOpen, Count: 1, FirstSeen: now, LastSeen: now, Opened: 1, Seq: 1}
			v, _ := json.Marshal(a)
			if _, err := js.PublishAsync(bus.KVSubject(alarm.Bucket, a.ID), v); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish stalled")
		}
	}
	b.Logf("100,000 alarms put in %s", time.Since(now))
	st, err := js.Stream(ctx, "KV_"+alarm.Bucket)
	if err != nil || st.CachedInfo().State.Msgs != 100000 {
		b.Fatalf("bucket holds %d alarms, %v", st.CachedInfo().State.Msgs, err)
	}
	b.ResetTimer()
	for range b.N {
		all, err := List(ctx, js)
		if err != nil || len(all) != 100000 {
			b.Fatalf("%d alarms, %v", len(all), err)
		}
		if got := alarm.Select(all, alarm.Filter{Site: "s08", Severity: meshmon.SeverityCritical, State: alarm.StateOpen}); len(got) != 1000 {
			b.Fatalf("selected %d", len(got))
		}
	}
}
