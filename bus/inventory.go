package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// Inventory is a site's device inventory in the DevicesBucket KV bucket:
// one key per device name, the device as JSON. It is safe for concurrent
// use.
type Inventory struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// OpenInventory binds to the devices bucket, which EnsureStreams creates.
func OpenInventory(ctx context.Context, js jetstream.JetStream) (*Inventory, error) {
	kv, err := js.KeyValue(ctx, DevicesBucket)
	if err != nil {
		return nil, fmt.Errorf("open inventory: %w", err)
	}
	return &Inventory{js: js, kv: kv}, nil
}

func encodeDevice(d meshmon.Device) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	d.Revision = 0
	return json.Marshal(d)
}

func decodeDevice(e jetstream.KeyValueEntry) (meshmon.Device, error) {
	var d meshmon.Device
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return meshmon.Device{}, fmt.Errorf("decode device %s: %w", e.Key(), err)
	}
	d.Revision = e.Revision()
	return d, nil
}

// Put stores d, replacing any device of the same name, and returns the
// new revision. d is validated first; the error then wraps
// meshmon.ErrInvalidDevice.
func (inv *Inventory) Put(ctx context.Context, d meshmon.Device) (rev uint64, err error) {
	b, err := encodeDevice(d)
	if err != nil {
		return 0, err
	}
	rev, err = inv.kv.Put(ctx, d.Name, b)
	if err != nil {
		return 0, fmt.Errorf("put device %s: %w", d.Name, err)
	}
	return rev, nil
}

// Create stores d if no device of that name exists, and returns the new
// revision. It returns an error wrapping ErrDeviceExists if one does, or
// meshmon.ErrInvalidDevice if d is invalid.
func (inv *Inventory) Create(ctx context.Context, d meshmon.Device) (rev uint64, err error) {
	b, err := encodeDevice(d)
	if err != nil {
		return 0, err
	}
	rev, err = inv.kv.Create(ctx, d.Name, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("create device %s: %w", d.Name, ErrDeviceExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create device %s: %w", d.Name, err)
	}
	return rev, nil
}

// Update stores d in place of the device of the same name on condition
// that it is still at d.Revision (as Get or List read it), and returns the
// new revision. It returns an error wrapping ErrDeviceChanged if the
// device changed or was removed since, or meshmon.ErrInvalidDevice if d
// is invalid.
func (inv *Inventory) Update(ctx context.Context, d meshmon.Device) (rev uint64, err error) {
	b, err := encodeDevice(d)
	if err != nil {
		return 0, err
	}
	rev, err = inv.kv.Update(ctx, d.Name, b, d.Revision)
	if errors.Is(err, jetstream.ErrKeyExists) { // and ErrKeyRevisionMismatch
		return 0, fmt.Errorf("update device %s at revision %d: %w", d.Name, d.Revision, ErrDeviceChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("update device %s: %w", d.Name, err)
	}
	return rev, nil
}

// Get returns the device called name, with Revision set. It returns an
// error wrapping ErrDeviceNotFound if there is none.
func (inv *Inventory) Get(ctx context.Context, name string) (meshmon.Device, error) {
	if err := meshmon.ValidateName("device name", name); err != nil {
		return meshmon.Device{}, err
	}
	e, err := inv.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return meshmon.Device{}, fmt.Errorf("get device %s: %w", name, ErrDeviceNotFound)
	}
	if err != nil {
		return meshmon.Device{}, fmt.Errorf("get device %s: %w", name, err)
	}
	return decodeDevice(e)
}

// List returns every device, sorted by name; an empty inventory gives an
// empty list.
func (inv *Inventory) List(ctx context.Context) ([]meshmon.Device, error) {
	entries, err := readBucket(ctx, inv.js, DevicesBucket)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	devices := make([]meshmon.Device, 0, len(entries))
	for _, e := range entries {
		var d meshmon.Device
		if err := json.Unmarshal(e.value, &d); err != nil {
			return nil, fmt.Errorf("list devices: decode device %s: %w", e.key, err)
		}
		d.Revision = e.revision
		devices = append(devices, d)
	}
	sort.Slice(devices, func(i, j int) bool { return devices[i].Name < devices[j].Name })
	return devices, nil
}

// Delete removes the device called name. It returns an error wrapping
// ErrDeviceNotFound if there is none.
func (inv *Inventory) Delete(ctx context.Context, name string) error {
	if err := meshmon.ValidateName("device name", name); err != nil {
		return err
	}
	e, err := inv.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete device %s: %w", name, ErrDeviceNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	if err := inv.kv.Delete(ctx, name, jetstream.LastRevision(e.Revision())); err != nil {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// Watch delivers the current inventory (Initial set), then one change with
// Synced set, then every later add, change and delete as it happens. The
// channel is closed when ctx is done or the watch fails; the caller opens a
// new one. The goroutine that feeds the channel belongs to ctx: it ends
// when ctx is done, so the caller must cancel ctx (or drain the channel)
// to release it. A value that does not decode is skipped.
func (inv *Inventory) Watch(ctx context.Context) (<-chan meshmon.InventoryChange, error) {
	w, err := WatchAllWhole(ctx, inv.js, inv.kv)
	if err != nil {
		return nil, fmt.Errorf("watch devices: %w", err)
	}
	out := make(chan meshmon.InventoryChange, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		initial := true
		for {
			var e jetstream.KeyValueEntry
			select {
			case <-ctx.Done():
				return
			case u, ok := <-w.Updates():
				if !ok {
					return
				}
				e = u
			}
			var c meshmon.InventoryChange
			switch {
			case e == nil:
				initial = false
				c = meshmon.InventoryChange{Synced: true}
			case e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge:
				c = meshmon.InventoryChange{Name: e.Key(), Deleted: true, Initial: initial}
			default:
				d, err := decodeDevice(e)
				if err != nil {
					continue
				}
				c = meshmon.InventoryChange{Name: e.Key(), Device: d, Initial: initial}
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
