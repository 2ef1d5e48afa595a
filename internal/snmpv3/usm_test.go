package snmpv3

import (
	"testing"

	"github.com/meshmon/meshmon"
)

// TestProtocols: every protocol meshmon accepts resolves to gosnmp's
// constant of that name, and nothing else resolves.
func TestProtocols(t *testing.T) {
	for _, n := range meshmon.AuthProtocols {
		if p, ok := AuthProtocol(n); !ok || p.String() != n {
			t.Errorf("AuthProtocol(%q) = %v, %v", n, p, ok)
		}
	}
	for _, n := range meshmon.PrivProtocols {
		if p, ok := PrivProtocol(n); !ok || p.String() != n {
			t.Errorf("PrivProtocol(%q) = %v, %v", n, p, ok)
		}
	}
	for _, n := range []string{"", "NoAuth", "sha", "SHA1"} {
		if _, ok := AuthProtocol(n); ok {
			t.Errorf("AuthProtocol(%q) resolved", n)
		}
	}
	for _, n := range []string{"", "NoPriv", "aes", "3DES"} {
		if _, ok := PrivProtocol(n); ok {
			t.Errorf("PrivProtocol(%q) resolved", n)
		}
	}
}
