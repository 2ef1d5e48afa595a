package meshmon

import (
	"strings"
	"testing"
)

func TestFormatEvent(t *testing.T) {
	ev := `{"specversion":"1.0","time":"2026-01-02T15:04:05.123Z","data":{"site":"paris","device":"r1","kind":"node_down","severity":"critical","message":"no answer"}}`
	got := FormatEvent("ev.paris.r1.node_down", []byte(ev))
	for _, want := range []string{"paris/r1", "node_down", "critical", "no answer"} {
		if !strings.Contains(got, want) {
			t.Errorf("FormatEvent = %q, without %q", got, want)
		}
	}
	if got := FormatEvent("ev.x", []byte("not json")); got != "ev.x  not json" {
		t.Errorf("FormatEvent of no event = %q", got)
	}
}
