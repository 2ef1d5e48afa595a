package meshmon

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckEvent: central acts on an event only when its body is what its
// subject says and the names alarms are built of are valid.
func TestCheckEvent(t *testing.T) {
	good := func() Event {
		return Event{Data: EventData{Site: "s1", Device: "core1", Kind: KindIfDown, Check: "if.3", Parent: "edge1",
			Trap: &Trap{Labels: map[string]string{"trap": "linkDown", "if_index": "3"}}}}
	}
	const subj = "ev.s1.core1.if_down"
	if err := CheckEvent(subj, new(good())); err != nil {
		t.Fatalf("a good event: %v", err)
	}
	for _, tc := range []struct {
		name, subject string
		edit          func(*EventData)
		want          string
	}{
		{"another site in the body", subj, func(d *EventData) { d.Site = "s2" }, `its site is "s2", its subject's "s1"`},
		{"another device in the body", subj, func(d *EventData) { d.Device = "core2" }, "its device"},
		{"another kind in the body", subj, func(d *EventData) { d.Kind = KindNodeDown }, "its kind"},
		{"a subject of five tokens", "ev.s1.core1.if_down.x", func(*EventData) {}, "not a subject"},
		{"a metric subject", "mx.s1.core1.if_down", func(*EventData) {}, "not a subject"},
		{"a check with a space", subj, func(d *EventData) { d.Check = "if.1 x" }, "check"},
		{"a check with a wildcard", subj, func(d *EventData) { d.Check = "if.>" }, "check"},
		{"a check with an empty token", subj, func(d *EventData) { d.Check = "if..3" }, "empty token"},
		{"a long check", subj, func(d *EventData) { d.Check = strings.Repeat("a", 200) }, "characters"},
		{"a parent with a dot", subj, func(d *EventData) { d.Parent = "a.b" }, "parent"},
		{"a trap's if_index that is text", subj, func(d *EventData) { d.Trap.Labels["if_index"] = "1 x" }, "if_index"},
		{"an upper-case site on both", "ev.S1.core1.if_down", func(d *EventData) { d.Site = "S1" }, "site"},
	} {
		ev := good()
		tc.edit(&ev.Data)
		err := CheckEvent(tc.subject, &ev)
		if !errors.Is(err, ErrUntrustedEvent) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrUntrustedEvent saying %q", tc.name, err, tc.want)
		}
	}
	ev := good()
	ev.Data.Check, ev.Data.Parent, ev.Data.Trap = "trap.coldStart", "", nil
	if err := CheckEvent(subj, &ev); err != nil {
		t.Errorf("trap.coldStart, no parent: %v", err)
	}
}
