package bus

import (
	"encoding/json"
	"errors"
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

// TestShowableEvent: what events tail shows of central's EVENTS. A site's
// own events show, and so do bodies that are no event or leave fields
// out; an event a site's link delivered on another site's subject, or
// whose body says another site, device or kind than its subject, does
// not.
func TestShowableEvent(t *testing.T) {
	event := func(site, device, kind string) []byte {
		b, err := json.Marshal(meshmon.Event{SpecVersion: "1.0", ID: "x", Type: meshmon.EventTypePrefix + kind, Time: time.Now().UTC(),
			Data: meshmon.EventData{Site: site, Device: device, Kind: kind, Severity: meshmon.SeverityInfo}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	via := func(site, subject string) nats.Header {
		h := nats.Header{}
		h.Set(HdrStreamSource, EventsStream+":"+serverHash("$JS."+site+".API")+":C=abcdefgh 7 > > "+subject)
		return h
	}
	const s1, s2 = "ev.s1.d1.trap", "ev.s2.d1.trap"
	for _, c := range []struct {
		name    string
		subject string
		h       nats.Header
		data    []byte
		shown   bool
	}{
		{"s1's event through s1's source", s1, via("s1", s1), event("s1", "d1", "trap"), true},
		{"an event at the site, not sourced", s1, nats.Header{}, event("s1", "d1", "trap"), true},
		{"a body that is no event", s1, via("s1", s1), []byte("s1-event"), true},
		{"s2's subject through s1's source", s2, via("s1", s2), event("s2", "d1", "trap"), false},
		{"no event, s2's subject through s1's source", s2, via("s1", s2), []byte("forged"), false},
		{"a body saying another site", s1, via("s1", s1), event("s2", "d1", "trap"), false},
		{"a body saying another device", s1, nats.Header{}, event("s1", "d2", "trap"), false},
		{"a body saying another kind", s1, nats.Header{}, event("s1", "d1", "node_down"), false},
		{"a body that leaves its site and device out", s1, via("s1", s1), []byte(`{"data":{"kind":"trap"}}`), true},
	} {
		err := ShowableEvent(c.subject, c.h, c.data)
		if c.shown && err != nil {
			t.Errorf("%s: %v, want it shown", c.name, err)
		}
		if !c.shown && !errors.Is(err, meshmon.ErrUntrustedEvent) {
			t.Errorf("%s: %v, want an untrusted event", c.name, err)
		}
	}
}
