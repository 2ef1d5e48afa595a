package bus

import (
	"errors"
	"slices"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestInventoryUpsertImport: Upsert says whether it replaced; Import stops
// at the first device that exists unless it replaces, keeping those
// before it.
func TestInventoryUpsertImport(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
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
