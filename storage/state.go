package storage

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// States live in one nested bucket per device under bucketState, so that
// States and DeleteStates touch only that device's keys whatever bytes the
// names hold.

func checkStateKey(device, check string) error {
	if device == "" || check == "" {
		return fmt.Errorf("state %q/%q: %w: device and check must both be set", device, check, errEmptyName)
	}
	if len(device) > bolt.MaxKeySize || len(check) > bolt.MaxKeySize {
		return fmt.Errorf("state %.40q/%.40q: name too long", device, check)
	}
	return nil
}

func putState(states *bolt.Bucket, s StateUpdate) error {
	if s.Value == nil {
		b := states.Bucket([]byte(s.Device))
		if b == nil {
			return nil
		}
		if err := b.Delete([]byte(s.Check)); err != nil {
			return fmt.Errorf("delete state %s/%s: %w", s.Device, s.Check, err)
		}
		return nil
	}
	b, err := states.CreateBucketIfNotExists([]byte(s.Device))
	if err != nil {
		return fmt.Errorf("state %s: %w", s.Device, err)
	}
	if err := b.Put([]byte(s.Check), s.Value); err != nil {
		return fmt.Errorf("put state %s/%s: %w", s.Device, s.Check, err)
	}
	return nil
}

// State returns the stored state of one check of a device, and whether there
// is one.
func (db *DB) State(device, check string) ([]byte, bool, error) {
	if err := checkStateKey(device, check); err != nil {
		return nil, false, err
	}
	var (
		val   []byte
		found bool
	)
	err := db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Bucket([]byte(device))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(check)); v != nil {
			val, found = append([]byte{}, v...), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("state %s/%s: %w", device, check, err)
	}
	return val, found, nil
}

// States returns every stored state of a device, by check. The map is empty,
// not nil, for a device with none.
func (db *DB) States(device string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if device == "" {
		return out, nil
	}
	err := db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Bucket([]byte(device))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte{}, v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("states %s: %w", device, err)
	}
	return out, nil
}

// DeleteStates deletes every stored state of a device (it was removed).
func (db *DB) DeleteStates(device string) error {
	if device == "" {
		return nil
	}
	err := db.update(func(tx *bolt.Tx) error {
		states := tx.Bucket(bucketState)
		if states.Bucket([]byte(device)) == nil {
			return nil
		}
		return states.DeleteBucket([]byte(device))
	})
	if err != nil {
		return fmt.Errorf("delete states %s: %w", device, err)
	}
	return nil
}
