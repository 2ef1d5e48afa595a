package storage

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var keyInstance = []byte("instance")

// Instance returns the id of this storage file, made at random the first
// time it is asked for and kept from then on. A poller restarted on the same
// file is the same instance; another machine running a poller of the same
// name is not.
func (db *DB) Instance() (string, error) {
	var id string
	err := db.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyInstance); len(v) > 0 {
			id = string(v)
			return nil
		}
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		id = hex.EncodeToString(b)
		return meta.Put(keyInstance, []byte(id))
	})
	if err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return id, nil
}
