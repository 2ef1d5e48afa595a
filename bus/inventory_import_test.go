package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// testInventory is the inventory of a server of its own.
func testInventory(t *testing.T) (context.Context, *Inventory) {
	t.Helper()
	_, _, js := runJS(t)
	ctx := testCtx(t)
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, inv
}

// TestInventoryUpsertImport: Upsert says whether it replaced; Import stops
// at the first device that exists unless it replaces, keeping those
// before it.
func TestInventoryUpsertImport(t *testing.T) {
	ctx, inv := testInventory(t)
	if _, replaced, err := inv.Upsert(ctx, testDevice("sw1")); err != nil || replaced {
		t.Fatalf("upsert of a new device: replaced %v, %v", replaced, err)
	}
	d := testDevice("sw1")
	d.Address = "10.0.0.9"
	if _, replaced, err := inv.Upsert(ctx, d); err != nil || !replaced {
		t.Fatalf("upsert of sw1 again: replaced %v, %v", replaced, err)
	}
	if got, err := inv.Get(ctx, "sw1"); err != nil || got.Address != "10.0.0.9" {
		t.Fatalf("sw1 after upsert: %+v, %v", got, err)
	}
	names, err := inv.Import(ctx, []meshmon.Device{testDevice("sw2"), testDevice("sw1"), testDevice("sw3")}, false)
	if !errors.Is(err, ErrDeviceExists) || !slices.Equal(names, []string{"sw2"}) {
		t.Fatalf("import over sw1: %v, %v; want sw2 stored, then ErrDeviceExists", names, err)
	}
	if _, err := inv.Get(ctx, "sw3"); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("sw3, after the device that failed: %v", err)
	}
	names, err = inv.Import(ctx, []meshmon.Device{testDevice("sw1"), testDevice("sw3")}, true)
	if err != nil || !slices.Equal(names, []string{"sw1", "sw3"}) {
		t.Fatalf("import with replace: %v, %v", names, err)
	}
}

// TestInventoryAdd: Add refuses a device whose parent is not stored
// (ErrNoParent), creates one that is new, refuses one that exists
// (ErrDeviceExists) unless it replaces, and says whether it replaced.
func TestInventoryAdd(t *testing.T) {
	ctx, inv := testInventory(t)
	child := testDevice("ap1")
	child.Parent = "sw1"
	if _, err := inv.Add(ctx, child, false); !errors.Is(err, ErrNoParent) {
		t.Fatalf("add ap1 before its parent: %v; want ErrNoParent", err)
	}
	if ch, err := inv.Add(ctx, testDevice("sw1"), false); err != nil || ch.Result != "added" || ch.Device.Revision == 0 {
		t.Fatalf("add sw1: %+v, %v; want it added at a revision", ch, err)
	}
	if _, err := inv.Add(ctx, child, false); err != nil {
		t.Fatalf("add ap1 after its parent: %v", err)
	}
	if _, err := inv.Add(ctx, testDevice("sw1"), false); !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("add sw1 again: %v; want ErrDeviceExists", err)
	}
	if ch, err := inv.Add(ctx, testDevice("sw1"), true); err != nil || ch.Result != "replaced" {
		t.Fatalf("replace sw1: %+v, %v", ch, err)
	}
}

// TestInventoryParentLoop: neither Add nor Import stores a device whose
// parents would lead back to it; the error names the loop, and an import
// that would make one stores nothing.
func TestInventoryParentLoop(t *testing.T) {
	ctx, inv := testInventory(t)
	core := testDevice("core")
	dist := testDevice("dist")
	dist.Parent = "core"
	acc := testDevice("acc")
	acc.Parent = "dist"
	for _, d := range []meshmon.Device{core, dist, acc} {
		if _, err := inv.Add(ctx, d, false); err != nil {
			t.Fatal(err)
		}
	}
	core.Parent = "acc"
	_, err := inv.Add(ctx, core, true)
	if !errors.Is(err, ErrParentLoop) || !strings.Contains(err.Error(), "core -> acc -> dist -> core") {
		t.Fatalf("make core a child of acc: %v; want ErrParentLoop naming core -> acc -> dist -> core", err)
	}
	self := testDevice("dist")
	self.Parent = "dist"
	if _, err := inv.Add(ctx, self, true); !errors.Is(err, ErrParentLoop) {
		t.Fatalf("make dist its own parent: %v; want ErrParentLoop", err)
	}
	// In one file: a loop among new devices, and one through a stored one.
	a, b := testDevice("a"), testDevice("b")
	a.Parent, b.Parent = "b", "a"
	if names, err := inv.Import(ctx, []meshmon.Device{a, b}, true); !errors.Is(err, ErrParentLoop) || len(names) != 0 {
		t.Fatalf("import a and b, each the other's parent: %v, %v; want ErrParentLoop and nothing stored", names, err)
	}
	if names, err := inv.Import(ctx, []meshmon.Device{testDevice("x"), core}, true); !errors.Is(err, ErrParentLoop) || len(names) != 0 {
		t.Fatalf("import core under acc: %v, %v; want ErrParentLoop and nothing stored", names, err)
	}
	if got, err := inv.Get(ctx, "core"); err != nil || got.Parent != "" {
		t.Fatalf("core after the refused changes: %+v, %v; want it a root still", got, err)
	}
	// Moving a subtree elsewhere is no loop.
	acc.Parent = "core"
	if _, err := inv.Add(ctx, acc, true); err != nil {
		t.Fatalf("move acc under core: %v", err)
	}
}

// TestInventoryUpdate: Update stores a device read at its current
// revision, and refuses (ErrDeviceChanged) one that changed or was
// removed since it was read.
func TestInventoryUpdate(t *testing.T) {
	ctx, inv := testInventory(t)
	for _, n := range []string{"sw1", "ap1"} {
		if _, err := inv.Put(ctx, testDevice(n)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := inv.Get(ctx, "ap1")
	if err != nil {
		t.Fatal(err)
	}
	d.Parent = "sw1"
	if d.Revision, err = inv.Update(ctx, d); err != nil {
		t.Fatalf("update ap1 at its revision: %v", err)
	}
	if got, err := inv.Get(ctx, "ap1"); err != nil || got.Parent != "sw1" || got.Revision != d.Revision {
		t.Fatalf("ap1 after its update: %+v, %v", got, err)
	}
	stale := d
	if _, err := inv.Put(ctx, d); err != nil { // another writer
		t.Fatal(err)
	}
	if _, err := inv.Update(ctx, stale); !errors.Is(err, ErrDeviceChanged) {
		t.Fatalf("update of ap1 changed since: %v; want ErrDeviceChanged", err)
	}
	if d, err = inv.Get(ctx, "ap1"); err != nil {
		t.Fatal(err)
	}
	if err := inv.Delete(ctx, "ap1"); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Update(ctx, d); !errors.Is(err, ErrDeviceChanged) {
		t.Fatalf("update of ap1 removed since: %v; want ErrDeviceChanged", err)
	}
}

// TestSiteJoin: the join info of a site central sources, ErrSiteNotFound
// for another; AddSiteJoin of a site that exists returns its join info
// with ErrSiteExists.
func TestSiteJoin(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	if err := EnsureCentral(ctx, js, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	if err := PublishJoin(ctx, js, "c1", JoinInfo{Central: []string{"nats-leaf://c1:7422"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := SiteJoin(ctx, js, "paris"); !errors.Is(err, ErrSiteNotFound) {
		t.Fatalf("join info of an unknown site: %v; want ErrSiteNotFound", err)
	}
	if _, err := AddSiteJoin(ctx, js, "paris", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	info, err := SiteJoin(ctx, js, "paris")
	if err != nil || len(info.Central) != 1 {
		t.Fatalf("join info of paris: %+v, %v", info, err)
	}
	if again, err := AddSiteJoin(ctx, js, "paris", 1, time.Now()); !errors.Is(err, ErrSiteExists) || len(again.Central) != 1 {
		t.Fatalf("paris added again: %+v, %v; want its join info and ErrSiteExists", again, err)
	}
}

// TestCheckedEventFilter: each part is checked, the flag at fault named.
func TestCheckedEventFilter(t *testing.T) {
	for _, tt := range []struct {
		site, device, kind string
		want, err          string
	}{
		{"", "", "", "ev.*.*.*", ""},
		{"hq", "sw1", meshmon.KindNodeDown, "ev.hq.sw1.node_down", ""},
		{"hq", "", "", "ev.hq.*.*", ""},
		{"", "", "bogus", "", `--kind "bogus": not an event kind`},
		{"A B", "", "", "", "--site: "},
		{"hq", "sw.1", "", "", "--device: "},
	} {
		got, err := CheckedEventFilter(tt.site, tt.device, tt.kind)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("%q %q %q: %q, %v; want %q", tt.site, tt.device, tt.kind, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err)) {
			t.Errorf("%q %q %q: %v; want an error beginning %q", tt.site, tt.device, tt.kind, err, tt.err)
		}
	}
}

// TestImportWaitStoresEveryDevice: ImportWait stores a list longer than
// one of its tries (100 devices) whole.
func TestImportWaitStoresEveryDevice(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	var devs []meshmon.Device
	for i := range 250 {
		devs = append(devs, testDevice(fmt.Sprintf("sw%03d", i)))
	}
	if err := ImportWait(ctx, js, devs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	got, err := inv.List(ctx)
	if err != nil || len(got) != len(devs) {
		t.Fatalf("%d devices stored (%v), want %d", len(got), err, len(devs))
	}
}
