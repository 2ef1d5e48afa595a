package storage

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/meshmon/meshmon"
	bolt "go.etcd.io/bbolt"
)

// PutDevice stores (or replaces) a device in the cache, keyed by name. The
// cache stores what it is given, Revision included; it does not validate.
func (db *DB) PutDevice(d meshmon.Device) error {
	if d.Name == "" {
		return fmt.Errorf("put device: %w", errEmptyName)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.Name, err)
	}
	err = db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).Put([]byte(d.Name), b)
	})
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.Name, err)
	}
	return nil
}

// PutDevices caches devices in one transaction (one fsync, where a
// PutDevice each would take one each): a poller given hundreds of devices
// at once by its group polls them without waiting on the disk hundreds of
// times.
func (db *DB) PutDevices(ds []meshmon.Device) error {
	enc := make([][]byte, len(ds))
	for i, d := range ds {
		if d.Name == "" {
			return fmt.Errorf("put devices: %w", errEmptyName)
		}
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("put device %s: %w", d.Name, err)
		}
		enc[i] = b
	}
	if len(ds) == 0 {
		return nil
	}
	// By name: bbolt inserts each key into its leaf's slice of keys, which
	// within one transaction grows with every key; in any other order each
	// insert moves the keys after it (100,000 devices: 4.86 to 4.90 s, against
	// 0.24 to 0.25 s sorted, BenchmarkPutDevices), and a poller caches its
	// first assignment in one call.
	order := make([]int, len(ds))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(ds[a].Name, ds[b].Name) })
	err := db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		for _, i := range order {
			if err := b.Put([]byte(ds[i].Name), enc[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put %d devices: %w", len(ds), err)
	}
	return nil
}

// DeleteDevice removes a device from the cache; a missing one is not an
// error. Its states are kept: see DeleteStates.
func (db *DB) DeleteDevice(name string) error {
	if name == "" {
		return nil
	}
	err := db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// DeleteDevices removes devices from the cache in one transaction, and the
// check states of those of them in forget (see DeleteStates); missing ones
// are not an error.
func (db *DB) DeleteDevices(names, forget []string) error {
	if len(names) == 0 && len(forget) == 0 {
		return nil
	}
	err := db.update(func(tx *bolt.Tx) error {
		devices, states := tx.Bucket(bucketDevices), tx.Bucket(bucketState)
		for _, n := range names {
			if err := devices.Delete([]byte(n)); err != nil {
				return err
			}
		}
		for _, n := range forget {
			if states.Bucket([]byte(n)) == nil {
				continue
			}
			if err := states.DeleteBucket([]byte(n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %d devices: %w", len(names), err)
	}
	return nil
}

// Devices returns every cached device, sorted by name. A record that does
// not decode fails it with an error wrapping ErrCorrupt.
func (db *DB) Devices() ([]meshmon.Device, error) {
	var out []meshmon.Device
	err := db.view(func(tx *bolt.Tx) error {
		// bbolt keeps keys in byte order, which is Go's string order.
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d meshmon.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("device %s: %w: %w", k, ErrCorrupt, err)
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	return out, nil
}
