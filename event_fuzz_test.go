package meshmon_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// FuzzEventJSON decodes event JSON as every reader of the event streams
// does (the CLI's tail, the poller group's state recovery, the bench): what
// decodes must encode, and the encoding must read back to itself.
func FuzzEventJSON(f *testing.F) {
	addEventSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev meshmon.Event
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		b1, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("an event that decodes does not encode: %v\n%q", err, data)
		}
		var ev2 meshmon.Event
		if err := json.Unmarshal(b1, &ev2); err != nil {
			t.Fatalf("an encoded event does not decode: %v\n%s", err, b1)
		}
		if !ev2.Time.Equal(ev.Time) {
			t.Fatalf("time %v came back as %v", ev.Time, ev2.Time)
		}
		b2, err := json.Marshal(ev2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("round trip not stable (%v):\n%s\n%s", err, b1, b2)
		}
	})
}

// addEventSeeds adds to f events as pollers write them, and some edges.
func addEventSeeds(f *testing.F) {
	at := time.Date(2026, 12, 2, 19, 4, 5, 123456789, time.UTC)
	for _, ev := range []meshmon.Event{
		{
			SpecVersion: "1.0", ID: meshmon.MsgID("acme", "paris", "r1", "icmp", at), Source: "/meshmon/acme/paris/p1",
			Type: meshmon.EventTypePrefix + meshmon.KindNodeDown, Time: at, Subject: "r1", DataContentType: "application/json",
			Data: meshmon.EventData{Tenant: "acme", Site: "paris", Device: "r1", Address: "192.0.2.1", Kind: meshmon.KindNodeDown,
				Check: "icmp", Severity: meshmon.SeverityCritical, Message: "r1 stopped answering ping", Reason: "timeout",
				Previous: "up", State: "down", Poller: "p1", Assignment: 7},
		},
		{
			SpecVersion: "1.0", ID: "x", Type: meshmon.EventTypePrefix + meshmon.KindIfDown, Time: at.In(time.FixedZone("", -5*3600)),
			Data: meshmon.EventData{Kind: meshmon.KindIfDown, Check: "if.3", IfIndex: 3, IfName: "eth2"},
		},
		{
			SpecVersion: "1.0", Type: meshmon.EventTypePrefix + meshmon.KindTrap, Time: at,
			Data: meshmon.EventData{Kind: meshmon.KindTrap, Check: "trap", Trap: &meshmon.Trap{
				Version: "2c", From: "192.0.2.9:1062", Community: "public", OID: "1.3.6.1.6.3.1.1.5.3", Uptime: 4200,
				Varbinds: []meshmon.Varbind{{OID: "1.3.6.1.2.1.2.2.1.1.3", Type: "Integer", Value: "3"}},
				Labels:   map[string]string{"ifIndex": "3"},
			}},
		},
	} {
		b, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"time":"2026-12-02T19:04:05+23:59","data":{"trap":null,"if_index":-1}}`))
	f.Add([]byte(`{"time":"0000-01-01T00:00:00Z","data":{"assignment":18446744073709551615}}`))
	f.Add([]byte(`{"data":{"trap":{"labels":{"":"\ud800"}}}}`))
}

// FuzzDecodeEvent holds DecodeEvent to encoding/json: it never panics;
// what both accept decodes to the same event; and whatever encoding/json
// accepts, once encoded again (as a poller writes it), DecodeEvent reads
// back to the same event. (On input that is not an encoded event they may
// differ on whether to refuse it: DecodeEvent refuses, for one, a time
// without two-digit hours that encoding/json takes.)
func FuzzDecodeEvent(f *testing.F) {
	addEventSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var std, fast meshmon.Event
		stdErr, fastErr := json.Unmarshal(data, &std), meshmon.DecodeEvent(data, &fast)
		if stdErr == nil && fastErr == nil && !reflect.DeepEqual(std, fast) {
			t.Fatalf("decoded differently from encoding/json:\n%q\n%#v\n%#v", data, std, fast)
		}
		if stdErr != nil {
			return
		}
		b, err := json.Marshal(std)
		if err != nil {
			return // FuzzEventJSON's concern
		}
		var back, again meshmon.Event
		if err := meshmon.DecodeEvent(b, &back); err != nil {
			t.Fatalf("an encoded event does not decode: %v\n%s", err, b)
		}
		if json.Unmarshal(b, &again) != nil || !reflect.DeepEqual(back, again) {
			t.Fatalf("an encoded event decoded differently from encoding/json:\n%s\n%#v\n%#v", b, again, back)
		}
	})
}
