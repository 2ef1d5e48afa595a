package bus

import "errors"

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
