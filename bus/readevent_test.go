package bus

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon"
)

// BenchmarkReadEvent: what central's readers pay for holding an event to
// its subject and source (ReadEvent) over decoding it alone
// (meshmon.DecodeEvent), in the same run: compare the two ns/op.
func BenchmarkReadEvent(b *testing.B) {
	at := time.Date(2026, 12, 7, 2, 0, 0, 123456789, time.UTC)
	data, err := json.Marshal(meshmon.Event{SpecVersion: "1.0", ID: "s1-12345", Source: "/meshmon/default/s1/bench",
		Type: meshmon.EventTypePrefix + meshmon.KindTrap, Time: at, Subject: "dev45", DataContentType: "application/json",
		Data: meshmon.EventData{Tenant: "default", Site: "s1", Device: "dev45", Kind: meshmon.KindTrap, Check: "trap",
			Severity: meshmon.SeverityInfo, Message: "bench event 12345"}})
	if err != nil {
		b.Fatal(err)
	}
	subject := meshmon.EventSubject("s1", "dev45", meshmon.KindTrap)
	h := nats.Header{}
	h.Set(HdrStreamSource, EventsStream+":"+serverHash("$JS.s1.API")+":C=abcdefgh 12345 > > "+subject)
	for _, c := range []struct {
		name string
		read func(*meshmon.Event) error
	}{
		{"DecodeEvent", func(e *meshmon.Event) error { return meshmon.DecodeEvent(data, e) }},
		{"ReadEvent", func(e *meshmon.Event) error { return ReadEvent(subject, h, data, e) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var e meshmon.Event
				if err := c.read(&e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
