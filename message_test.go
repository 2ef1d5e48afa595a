package meshmon_test

import (
	"testing"

	"github.com/meshmon/meshmon"
)

func TestMessageSubject(t *testing.T) {
	for _, tt := range []struct {
		m    meshmon.Message
		want string
	}{
		{meshmon.Message{Stream: meshmon.StreamEvents, Site: "hq", Device: "sw1", Kind: meshmon.KindNodeDown}, "ev.hq.sw1.node_down"},
		{meshmon.Message{Stream: meshmon.StreamMetrics, Site: "hq", Device: "sw1", Kind: meshmon.CheckICMP}, "mx.hq.sw1.icmp"},
		{meshmon.Message{Site: "hq", Device: "sw1", Kind: "x"}, ""},
		{meshmon.Message{Stream: 9, Site: "hq", Device: "sw1", Kind: "x"}, ""},
	} {
		if got := tt.m.Subject(); got != tt.want {
			t.Errorf("%s message: Subject() = %q, want %q", tt.m.Stream, got, tt.want)
		}
	}
	if s := meshmon.Stream(9).String(); s != "stream(9)" {
		t.Errorf("Stream(9).String() = %q", s)
	}
}
