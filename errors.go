package meshmon

import "errors"

// ErrInvalidName is wrapped by every error that ValidateName returns.
var ErrInvalidName = errors.New("invalid name")

// ErrInvalidDevice is wrapped by every error that Device.Validate returns.
var ErrInvalidDevice = errors.New("invalid device")

// ErrRejected is wrapped by a publisher when the peer refused a message for
// good (too large, no stream for its subject, ...). Retrying it cannot
// succeed; the caller drops it.
var ErrRejected = errors.New("message rejected")

// ErrPeerDiskFull is wrapped by a publisher when the peer refuses to store
// because its disk is full. Nothing is stored; the caller keeps the
// messages and retries later: the peer resumes storing by itself once its
// disk has room.
var ErrPeerDiskFull = errors.New("peer disk full")

// ErrInvalidRoot is wrapped by PlanParents when a root is not a device of
// the site or has no link to one.
var ErrInvalidRoot = errors.New("invalid root")
