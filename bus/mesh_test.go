package bus

import (
	"strings"
	"testing"
)

// TestValidateSite: a site is a valid name and not central's domain.
func TestValidateSite(t *testing.T) {
	for _, tt := range []struct {
		site string
		ok   bool
	}{{"paris", true}, {"site-2", true}, {HubDomain, false}, {"", false}, {"a.b", false}} {
		if err := ValidateSite(tt.site); (err == nil) != tt.ok {
			t.Errorf("ValidateSite(%q): %v", tt.site, err)
		}
	}
}

// TestPeerRemovedText: the members left, and a word when they are fewer
// than three.
func TestPeerRemovedText(t *testing.T) {
	var b strings.Builder
	if err := (PeerRemoved{Members: []string{"c1", "c2"}, Removed: "c3"}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasPrefix(got, "peer c3 removed from the cluster; members left: c1, c2\n") || !strings.Contains(got, "fewer than three") {
		t.Errorf("text: %q", got)
	}
}
