package bench

import (
	"context"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/meshtest"
)

// TestSettleSources runs a real central of three peers and one site: an
// idle mesh is settled at once; a site holding a backlog it cannot
// deliver (its link cut; more than its source consumer may have awaiting
// central, so a keeper taking deliveries in the cut still leaves it at its
// limit) is not, and is again once central has it all.
func TestSettleSources(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mesh, err := meshtest.StartMesh(ctx, meshtest.MeshConfig{Dir: t.TempDir(), Prefix: "settle-", Central: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer mesh.Close()
	sites, closeSites, err := startSites(ctx, MeshConfig{Sites: 1}, t.TempDir(), mesh)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSites()

	if _, err := settleSources(ctx, sites, time.Minute); err != nil {
		t.Fatalf("idle mesh: %v", err)
	}

	n := bus.SourceMaxAckPending + 1_000
	mesh.CutWAN(true, false)
	if err := publishAll(ctx, sites, 0, n, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := settleSources(ctx, sites, 300*time.Millisecond); err == nil {
		t.Fatalf("settled while the site holds %d events central cannot have", n)
	}

	mesh.CutWAN(false, false)
	if err := waitCentral(ctx, mesh.CentralJS, n, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := settleSources(ctx, sites, time.Minute); err != nil {
		t.Fatalf("after the catch-up: %v", err)
	}
}
