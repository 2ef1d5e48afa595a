package bus

import "errors"

// ErrRejected is wrapped by PublishBatch when the server refused a message
// for good (too large, no stream for its subject, ...). Retrying it cannot
// succeed; the caller should drop it. The wrapping error names the index of
// the message in the batch and the server's reason.
var ErrRejected = errors.New("message rejected")

// ErrDeviceExists is returned by Inventory.Create when a device of that
// name is already in the inventory.
var ErrDeviceExists = errors.New("device already exists")

// ErrDeviceNotFound is returned by Inventory.Get and Inventory.Delete when
// no device of that name is in the inventory.
var ErrDeviceNotFound = errors.New("device not found")

// ErrNoServer is wrapped by ConnectWait when no server answered at the
// configured URL before the context was done.
var ErrNoServer = errors.New("no server answering")

// ErrInvalidConfig is wrapped by every error that ConnConfig.Validate and
// StreamLimits.Validate return.
var ErrInvalidConfig = errors.New("invalid config")
