package meshmon_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules guards the layout: the root package imports nothing of
// the module, and the poller imports neither the peer nor the transport.
func TestDependencyRules(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/meshmon/meshmon"
	for _, d := range deps(mod) {
		if strings.HasPrefix(d, mod+"/") {
			t.Errorf("root package imports %s; it must import nothing of the module", d)
		}
	}
	for _, d := range deps(mod + "/poller") {
		if d == mod+"/peer" || strings.HasPrefix(d, "github.com/nats-io/nats-server") {
			t.Errorf("poller imports %s; it must not depend on the peer", d)
		}
		if d == mod+"/bus" || strings.HasPrefix(d, "github.com/nats-io/") {
			t.Errorf("poller imports %s; it describes itself with the root package's types, not the transport's", d)
		}
	}
	for _, d := range deps(mod + "/console") {
		if d == mod+"/peer" || strings.HasPrefix(d, "github.com/nats-io/nats-server") {
			t.Errorf("console imports %s; it reaches central through its Dialer, as the user who logged in", d)
		}
	}
}
