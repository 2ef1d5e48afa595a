package storage

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the errors that wrap them name
// the file and say what happened.
var (
	// ErrSpoolFull is returned by Commit when the spool would pass
	// Options.MaxSpoolBytes, and by every write when the file system is full
	// (then the error also wraps syscall.ENOSPC). Nothing of the failed call
	// was written; Ack frees space.
	ErrSpoolFull = errors.New("spool full")

	// ErrLocked is returned by Open when another process (or another DB in
	// this process) holds the file.
	ErrLocked = errors.New("locked by another process")

	// ErrCorrupt is returned by Open when the file is not a valid bbolt file,
	// and by any method that finds a damaged page or spool entry.
	ErrCorrupt = errors.New("corrupt file")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("storage closed")
)

// EntryError reports a spool entry that cannot be decoded. It wraps
// ErrCorrupt; the caller can Drop(Seq) to get past it.
type EntryError struct {
	Path string
	Seq  uint64
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("spool %s: entry %d: %v: %v", e.Path, e.Seq, ErrCorrupt, e.Err)
}

// Unwrap returns ErrCorrupt and the decoding error.
func (e *EntryError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// diskFullError is what a write that hit ENOSPC returns: it wraps both
// ErrSpoolFull and the OS error, so callers treat a full disk like a full
// spool (stop adding, drain, Ack) and can still tell the two apart.
type diskFullError struct {
	path string
	err  error
}

func (e *diskFullError) Error() string {
	return "spool " + e.path + ": disk full: " + e.err.Error()
}

func (e *diskFullError) Unwrap() []error { return []error{ErrSpoolFull, e.err} }
