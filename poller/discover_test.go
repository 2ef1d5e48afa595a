package poller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestSplitCandidates: a discovery's candidates go out in replies of at
// most the limit each, in order, none lost; a candidate over the limit
// goes alone, and nothing to send is still one (empty) reply, for the
// progress.
func TestSplitCandidates(t *testing.T) {
	cand := func(name string, descr int) meshmon.Candidate {
		return meshmon.Candidate{Address: "192.0.2.1", SNMP: true, SysName: name, SysDescr: strings.Repeat("d", descr)}
	}
	size := func(c meshmon.Candidate) int { b, _ := json.Marshal(c); return len(b) }
	small := size(cand("a", 0))
	for _, tt := range []struct {
		name  string
		cs    []meshmon.Candidate
		limit int
		want  []int // candidates per batch
	}{
		{"none", nil, 1000, []int{0}},
		{"all fit", []meshmon.Candidate{cand("a", 0), cand("b", 0), cand("c", 0)}, 3 * (small + 1), []int{3}},
		{"two a batch", []meshmon.Candidate{cand("a", 0), cand("b", 0), cand("c", 0)}, 2*small + 1, []int{2, 1}},
		{"one too big", []meshmon.Candidate{cand("a", 0), cand("b", 4000), cand("c", 0)}, 3 * small, []int{1, 1, 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := splitCandidates(tt.cs, tt.limit)
			var counts []int
			var names []string
			for _, b := range got {
				counts = append(counts, len(b))
				n := 0
				for _, c := range b {
					names = append(names, c.SysName)
					n += size(c) + 1
				}
				if len(b) > 1 && n-1 > tt.limit {
					t.Errorf("a batch of %d candidates has %d bytes, over %d", len(b), n-1, tt.limit)
				}
			}
			var want []string
			for _, c := range tt.cs {
				want = append(want, c.SysName)
			}
			if strings.Join(names, ",") != strings.Join(want, ",") || !slices.Equal(counts, tt.want) {
				t.Errorf("batches %v of %v, want %v of %v", counts, names, tt.want, want)
			}
		})
	}
}
