package poller

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestStateCodec: check states and counters come back as stored, in the
// binary form and from the JSON an earlier release stored; a damaged
// value is an error, never a state.
func TestStateCodec(t *testing.T) {
	at := time.Date(2026, 12, 4, 16, 0, 0, 123456789, time.UTC)
	checks := []checkState{
		{},
		{State: stateUp, Reported: stateUp, Since: at},
		{State: stateDown, Reported: stateDown, Pending: stateUp, Count: 2, Changes: []time.Time{at.Add(-time.Minute), at},
			Flapping: true, Since: at, Reason: "ifOperStatus down"},
	}
	for _, s := range checks {
		var got checkState
		if err := decodeCheck(encodeCheck(s), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("check state %+v came back as %+v", s, got)
		}
		old, _ := json.Marshal(s)
		got = checkState{}
		if err := decodeCheck(old, &got); err != nil || !sameState(got, s) {
			t.Errorf("check state from JSON %s: %+v, %v", old, got, err)
		}
	}
	counters := map[int]counterState{
		1:          {In: 1, Out: 2, At: at},
		2:          {In: 1 << 63, Out: 1<<64 - 1, HC: true, At: at},
		1000000001: {At: at},
	}
	for _, m := range []map[int]counterState{{}, counters} {
		var got map[int]counterState
		b := encodeCounters(m)
		if err := decodeCounters(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("counters %v came back as %v", m, got)
		}
		old, _ := json.Marshal(m)
		got = nil
		if err := decodeCounters(old, &got); err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("counters from JSON %s: %v, %v", old, got, err)
		}
		if len(m) == 3 && len(b) >= len(old)/3 {
			t.Errorf("counters take %d bytes, as JSON %d", len(b), len(old))
		}
	}
	// Counters of different times (not of one poll) are kept whole.
	mixed := map[int]counterState{1: {In: 5, At: at}, 2: {In: 6, At: at.Add(time.Second)}}
	var got map[int]counterState
	if err := decodeCounters(encodeCounters(mixed), &got); err != nil || !reflect.DeepEqual(got, mixed) {
		t.Errorf("mixed counters came back as %v, %v", got, err)
	}

	full := encodeCheck(checks[2])
	for n := range len(full) {
		var s checkState
		if err := decodeCheck(full[:n], &s); err == nil {
			t.Errorf("check state cut to %d of %d bytes decoded: %+v", n, len(full), s)
		}
	}
	if err := decodeCheck(append(full, 0), new(checkState)); err == nil {
		t.Error("check state with a byte past its end decoded")
	}
	if err := decodeCheck([]byte{9, 0}, new(checkState)); err == nil {
		t.Error("check state of an unknown encoding decoded")
	}
	cb := encodeCounters(counters)
	for n := range len(cb) {
		var m map[int]counterState
		if err := decodeCounters(cb[:n], &m); err == nil {
			t.Errorf("counters cut to %d of %d bytes decoded: %v", n, len(cb), m)
		}
	}
}

func FuzzStateCodec(f *testing.F) {
	f.Add(encodeCheck(checkState{State: stateUp, Changes: []time.Time{time.Unix(1, 0)}, Reason: "x"}))
	f.Add(encodeCounters(map[int]counterState{3: {In: 7, At: time.Unix(5, 0)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s checkState
		if decodeCheck(b, &s) == nil && !isJSON(b) {
			var again checkState
			if err := decodeCheck(encodeCheck(s), &again); err != nil || !reflect.DeepEqual(again, s) {
				t.Fatalf("check state %+v did not round-trip: %+v, %v", s, again, err)
			}
		}
		var m map[int]counterState
		_ = decodeCounters(b, &m)
	})
}
