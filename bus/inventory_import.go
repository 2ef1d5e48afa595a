package bus

import (
	"context"
	"errors"

	"github.com/meshmon/meshmon"
)

// Upsert stores d, replacing a device of the same name, and says whether
// it replaced one; it returns the new revision.
func (inv *Inventory) Upsert(ctx context.Context, d meshmon.Device) (rev uint64, replaced bool, err error) {
	if _, gerr := inv.Get(ctx, d.Name); gerr == nil {
		replaced = true
	} else if !errors.Is(gerr, ErrDeviceNotFound) {
		return 0, false, gerr
	}
	rev, err = inv.Put(ctx, d)
	return rev, replaced, err
}

// Import stores devs in order, replacing devices of the same names if
// replace is set, else failing on the first that exists (an error
// wrapping ErrDeviceExists). It returns the names stored, also on error:
// devices before the failing one stay stored.
func (inv *Inventory) Import(ctx context.Context, devs []meshmon.Device, replace bool) ([]string, error) {
	names := make([]string, 0, len(devs))
	for _, d := range devs {
		var err error
		if replace {
			_, err = inv.Put(ctx, d)
		} else {
			_, err = inv.Create(ctx, d)
		}
		if err != nil {
			return names, err
		}
		names = append(names, d.Name)
	}
	return names, nil
}
