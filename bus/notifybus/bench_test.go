package notifybus_test

import (
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/notify"
)

// BenchmarkRunOpenings: alarm openings through the runner to a webhook
// (one peer, no rate limit, an escalation scheduled for each), from the
// stream to the receiver. Reports changes delivered a second.
func BenchmarkRunOpenings(b *testing.B) {
	e := newEnv(b)
	rcv := newReceiver(b, "k")
	e.webhook(b, "hook", rcv.srv.URL, "k", 0, 0)
	e.rule(b, notify.Rule{Name: "all", Channels: []string{"hook"}, Escalation: []notify.Step{{After: time.Hour, Channel: "hook"}}})
	now := time.Now().UTC()
	for i := range b.N {
		e.publish(b, opened(i, now))
	}
	b.ResetTimer()
	start := time.Now()
	e.run(b, testConfig())
	eventually.True(b, 10*time.Minute, "every change delivered", func() bool {
		_, items, _, _ := rcv.snapshot()
		return len(items) == b.N
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "changes/s")
}
