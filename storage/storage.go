// Package storage is the poller's local bbolt file: the spool of outgoing
// messages not yet acknowledged by the site peer, the last known state of
// every check (so a restart does not fire the same event twice), and a cache
// of the devices the poller was assigned. One file per poller process;
// nothing in it is replicated, so it never holds the only copy of shared state.
//
// A DB is safe for concurrent use. Commits from many goroutines are grouped
// into one transaction and one fsync (see Commit).
package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultLockTimeout is how long Open waits for another holder of the file
// to let go when Options.Timeout is zero.
const DefaultLockTimeout = time.Second

// Options tune a DB. The zero value is usable.
type Options struct {
	// MaxSpoolBytes caps the encoded size of all spooled messages. Past it
	// Commit fails with ErrSpoolFull and writes nothing. 0 means unlimited
	// (the file system is then the limit).
	MaxSpoolBytes int64

	// Timeout is how long Open waits for the file lock before it gives up
	// with ErrLocked. 0 means DefaultLockTimeout.
	Timeout time.Duration

	// legacySpool writes the spool as releases before codec version 3 did
	// (version 2 entries, bbolt's default page fill and file growth): for
	// the tests that read an old spool and the benchmark that compares.
	legacySpool bool
}

// The spool is append-only: entries go in at the end of the key space and
// leave from its start. bbolt splits a full page at FillPercent (0.5 by
// default, right for random inserts), which leaves every page of the spool
// half empty; at 1.0 each page is filled before the next is started.
const spoolFillPercent = 1.0

// filePageSize is the page size of a new file (a file keeps the page size
// it was made with). bbolt splits a full page so that at least two entries
// go to the new one; with 4 KiB pages and one 600-byte entry per commit
// that leaves four entries on each page (1 KiB per event), with 16 KiB
// pages twenty-five.
const filePageSize = 16 << 10

// allocSize is how much the file grows by at a time once it is past that
// size. bbolt's default, 16 MiB, leaves up to 16 MiB of the file unused:
// a quarter of a 30,000-event spool.
const allocSize = 1 << 20

// Bucket names and meta keys.
var (
	bucketSpool   = []byte("spool")   // seq (8 bytes, big endian) -> encoded message
	bucketState   = []byte("state")   // device -> bucket: check -> value
	bucketDevices = []byte("devices") // name -> JSON meshmon.Device
	bucketMeta    = []byte("meta")    // counters kept in step with spool

	keySpoolN     = []byte("spool.n")
	keySpoolBytes = []byte("spool.bytes")
)

// DB is an open storage file.
type DB struct {
	path string
	opt  Options
	bolt *bolt.DB

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// Group commit: the queue of commits waiting for the next transaction,
	// and whether a goroutine is running one. Guarded by cmu.
	cmu        sync.Mutex
	queue      []*commitReq
	committing bool
}

// Open opens or creates the file at path, creating its directory (mode 0700)
// if needed. It fails with an error wrapping ErrLocked if another process
// holds the file for longer than opt.Timeout, ErrCorrupt if the file is not
// a valid storage file, and the OS error (fs.ErrPermission, syscall.EROFS,
// ...) if the file or directory is not writable. Every error names the path.
func Open(path string, opt Options) (*DB, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open storage %s: create directory: %w", path, err)
	}
	bdb, err := openBolt(path, opt.Timeout, opt.legacySpool)
	if err != nil {
		return nil, openError(path, opt.Timeout, err)
	}
	if !opt.legacySpool {
		bdb.AllocSize = allocSize
	}
	db := &DB{path: path, opt: opt, bolt: bdb}
	if err := db.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSpool, bucketState, bucketDevices, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	}); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open storage %s: %w", path, err)
	}
	return db, nil
}

// openBolt opens the file, turning a panic inside bbolt (which it does on
// some damage, such as a garbled freelist page) into an error. After such a
// panic bbolt's file descriptor and lock are not released, so this process
// cannot open that path again; it is meant to report and stop.
func openBolt(path string, timeout time.Duration, legacy bool) (bdb *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, err = nil, fmt.Errorf("%w: bbolt panicked: %v", ErrCorrupt, r)
		}
	}()
	pageSize := filePageSize
	if legacy {
		pageSize = 0
	}
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType,
		PageSize:     pageSize,
	})
}

func openError(path string, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open storage %s: %w (waited %s for the file lock)", path, ErrLocked, timeout)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("open storage %s: %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return fmt.Errorf("open storage %s: %w: %w", path, ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("open storage %s: not writable: %w", path, err)
	case errors.Is(err, syscall.ENOSPC):
		return &diskFullError{path: path, err: err}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("open storage %s: %w", path, err)
	}
	// bbolt reports a file too short or otherwise unreadable as a plain
	// error ("file size too small", "invalid meta page", ...).
	return fmt.Errorf("open storage %s: %w: %w", path, ErrCorrupt, err)
}

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

// Close waits for running transactions and closes the file. It is
// idempotent; later calls return the first call's result. Methods called
// after Close return ErrClosed. Close starts no goroutines and leaves none.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		if err := db.bolt.Close(); err != nil {
			db.closeErr = fmt.Errorf("close storage %s: %w", db.path, err)
		}
	})
	return db.closeErr
}

// update runs fn in a read-write transaction and maps errors.
func (db *DB) update(fn func(*bolt.Tx) error) (err error) {
	if db.closed.Load() {
		return ErrClosed
	}
	defer db.recoverCorrupt(&err)
	return db.mapErr(db.bolt.Update(fn))
}

// view runs fn in a read-only transaction and maps errors.
func (db *DB) view(fn func(*bolt.Tx) error) (err error) {
	if db.closed.Load() {
		return ErrClosed
	}
	defer db.recoverCorrupt(&err)
	return db.mapErr(db.bolt.View(fn))
}

// recoverCorrupt turns a bbolt panic (it panics on damaged pages) into
// ErrCorrupt. bbolt's own deferred rollback has run by then, so the DB
// stays usable for whatever is not damaged.
func (db *DB) recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("storage %s: %w: %v", db.path, ErrCorrupt, r)
	}
}

// mapErr turns bbolt and OS errors into this package's sentinels.
func (db *DB) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	case errors.Is(err, syscall.ENOSPC):
		var df *diskFullError
		if errors.As(err, &df) {
			return err
		}
		return &diskFullError{path: db.path, err: err}
	}
	return err
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func getUint(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, key []byte, n uint64) error {
	return b.Put(key, seqKey(n))
}
