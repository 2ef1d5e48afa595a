package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
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
	// Parents as they will be: the batch's own over the stored ones.
	batch := make(map[string]string, len(devs))
	for _, d := range devs {
		batch[d.Name] = d.Parent
	}
	parentOf := func(name string) (string, error) {
		if p, ok := batch[name]; ok {
			return p, nil
		}
		return inv.parentOf(ctx, name)
	}
	for _, d := range devs {
		if err := checkParentLoop(d.Name, d.Parent, parentOf); err != nil {
			return nil, fmt.Errorf("device %s: parent %s: %w", d.Name, d.Parent, err)
		}
	}
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

// Add stores d: replacing a device of the same name if replace is set,
// else failing with an error wrapping ErrDeviceExists when one exists. A
// device with a Parent needs the parent stored first: an error wrapping
// ErrNoParent otherwise. The change it returns says "added" or "replaced"
// ('device add' prints it).
func (inv *Inventory) Add(ctx context.Context, d meshmon.Device, replace bool) (meshmon.DeviceChange, error) {
	if d.Parent != "" {
		if _, err := inv.Get(ctx, d.Parent); errors.Is(err, ErrDeviceNotFound) {
			return meshmon.DeviceChange{}, fmt.Errorf("--parent %s: %w", d.Parent, ErrNoParent)
		} else if err != nil {
			return meshmon.DeviceChange{}, err
		}
		if err := checkParentLoop(d.Name, d.Parent, func(name string) (string, error) { return inv.parentOf(ctx, name) }); err != nil {
			return meshmon.DeviceChange{}, fmt.Errorf("--parent %s: %w", d.Parent, err)
		}
	}
	var err error
	replaced := false
	if replace {
		d.Revision, replaced, err = inv.Upsert(ctx, d)
	} else {
		d.Revision, err = inv.Create(ctx, d)
	}
	if err != nil {
		return meshmon.DeviceChange{}, err
	}
	if replaced {
		return meshmon.NewDeviceChange("replaced", d), nil
	}
	return meshmon.NewDeviceChange("added", d), nil
}

// OpenSiteInventory is OpenInventory over js, a connection to central in
// site's JetStream domain: the site's inventory, reached across its leaf
// link. A site that does not answer within ctx is an error wrapping
// ErrSiteOffline; wait is how long it was given (for the message).
func OpenSiteInventory(ctx context.Context, js jetstream.JetStream, site string, wait time.Duration) (*Inventory, error) {
	inv, err := OpenInventory(ctx, js)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w: site %s is offline or unknown (no answer from its JetStream domain in %s)", ErrSiteOffline, site, wait)
	}
	return inv, err
}

// ImportWait imports devs (replacing devices of the same names) into the
// inventory js reaches, asking again every second while the peer does not
// answer or has no inventory yet (a lab starts everything at once). It
// stores them 100 at a time, each hundred bounded by 10 s, and a retry
// goes on from the first device not yet stored: a slow peer makes it
// slower, never endless (it used to start over with all of them). It
// returns nil once they are stored, or when ctx ends first.
func ImportWait(ctx context.Context, js jetstream.JetStream, devs []meshmon.Device, log *slog.Logger) error {
	var inv *Inventory
	try := func() error {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if inv == nil {
			i, err := OpenInventory(actx, js)
			if err != nil {
				return err
			}
			inv = i
		}
		done, err := inv.Import(actx, devs[:min(len(devs), 100)], true)
		devs = devs[len(done):]
		return err
	}
	for b := backoff.New(time.Second, time.Second); len(devs) > 0; {
		if err := try(); err != nil {
			log.Info("waiting for the peer to import the devices", "left", len(devs), "err", err)
			if !b.Wait(ctx) {
				return nil
			}
		}
	}
	return nil
}

// parentOf is the parent of the stored device name ("" for a root).
func (inv *Inventory) parentOf(ctx context.Context, name string) (string, error) {
	d, err := inv.Get(ctx, name)
	if err != nil {
		return "", err
	}
	return d.Parent, nil
}

// checkParentLoop follows the parents of a device called name whose
// parent is to be parent (parentOf reads each next one), and fails with
// an error wrapping ErrParentLoop, naming the loop, if they lead back to
// it. A parent that is not stored ends the chain.
func checkParentLoop(name, parent string, parentOf func(string) (string, error)) error {
	chain := []string{name}
	seen := map[string]bool{name: true}
	for p := parent; p != ""; {
		chain = append(chain, p)
		if p == name {
			return fmt.Errorf("%w: %s", ErrParentLoop, strings.Join(chain, " -> "))
		}
		if seen[p] {
			return nil // a loop above that does not pass through name: not this change's
		}
		seen[p] = true
		next, err := parentOf(p)
		if errors.Is(err, ErrDeviceNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		p = next
	}
	return nil
}
