package bus

import "testing"

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
