package meshmon_test

import (
	"encoding/json"
	"strconv"
	"strings"
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

// TestDecodeEventRefusesDeepNesting: JSON nested deeper than an event
// nests is refused before it is decoded; a trap with many varbinds, whose
// openers are many but shallow, and braces inside strings, are not.
func TestDecodeEventRefusesDeepNesting(t *testing.T) {
	deep := []byte(`{"x":` + strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000) + `}`)
	var e meshmon.Event
	if err := meshmon.DecodeEvent(deep, &e); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("JSON nested 500,000 deep: err %v, want it refused for its nesting", err)
	}
	trap := meshmon.Event{ID: `{[{["\"`, Data: meshmon.EventData{Kind: meshmon.KindTrap, Message: strings.Repeat("{[", 100), Trap: &meshmon.Trap{}}}
	for i := range 100 {
		trap.Data.Trap.Varbinds = append(trap.Data.Trap.Varbinds, meshmon.Varbind{OID: "1.3.6." + strconv.Itoa(i), Value: `\"[`})
	}
	b, err := json.Marshal(trap)
	if err != nil {
		t.Fatal(err)
	}
	var got meshmon.Event
	if err := meshmon.DecodeEvent(b, &got); err != nil {
		t.Fatalf("a trap of 100 varbinds: %v", err)
	}
	if len(got.Data.Trap.Varbinds) != 100 || got.ID != trap.ID || got.Data.Message != trap.Data.Message {
		t.Fatalf("a trap of 100 varbinds decoded as %+v", got)
	}
}
