package meshtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
)

// TestMesh: an event stored at a site reaches central over the leaf links;
// one stored while the WAN is cut reaches it once the cut ends.
func TestMesh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := meshtest.StartMesh(ctx, meshtest.MeshConfig{Dir: t.TempDir(), Prefix: "t-", Central: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, _, err := m.AddSite(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	sjs := m.SiteJS[0]
	publish := func(id string) {
		t.Helper()
		if _, err := sjs.Publish(ctx, meshmon.EventSubject("s1", "d1", meshmon.KindTrap), []byte(`{}`)); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	centralHas := func(n uint64) func() bool {
		return func() bool {
			s, err := m.CentralJS.Stream(ctx, bus.EventsStream)
			return err == nil && s.CachedInfo().State.Msgs >= n
		}
	}
	publish("first")
	eventually.True(t, time.Minute, "the first event at central", centralHas(1))
	m.CutWAN(true, false)
	publish("during the cut")
	m.CutWAN(false, false)
	eventually.True(t, 2*time.Minute, "the event of the cut at central", centralHas(2))
}

// TestStartMeshRefusesSmallCluster: a central of fewer than 3 peers is
// refused before anything starts.
func TestStartMeshRefusesSmallCluster(t *testing.T) {
	if _, err := meshtest.StartMesh(context.Background(), meshtest.MeshConfig{Dir: t.TempDir(), Central: 1}); err == nil {
		t.Fatal("a central of 1 peer was started")
	}
}
