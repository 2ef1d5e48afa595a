package meshmon_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// BenchmarkDecodeEvent decodes a bench mesh event with encoding/json and
// with DecodeEvent, in the same run: compare the two ns/op.
func BenchmarkDecodeEvent(b *testing.B) {
	at := time.Date(2026, 12, 6, 22, 0, 0, 123456789, time.UTC)
	data, err := json.Marshal(meshmon.Event{SpecVersion: "1.0", ID: "s1-12345", Source: "/meshmon/default/s1/bench",
		Type: meshmon.EventTypePrefix + meshmon.KindTrap, Time: at, Subject: "dev45", DataContentType: "application/json",
		Data: meshmon.EventData{Tenant: "default", Site: "s1", Device: "dev45", Kind: meshmon.KindTrap, Check: "trap",
			Severity: meshmon.SeverityInfo, Message: "bench event 12345"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		decode func([]byte, *meshmon.Event) error
	}{
		{"encoding-json", func(b []byte, e *meshmon.Event) error { return json.Unmarshal(b, e) }},
		{"DecodeEvent", meshmon.DecodeEvent},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var e meshmon.Event
				if err := c.decode(data, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
