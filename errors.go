package meshmon

import "errors"

// ErrInvalidName is wrapped by every error that ValidateName returns.
var ErrInvalidName = errors.New("invalid name")

// ErrInvalidDevice is wrapped by every error that Device.Validate returns.
var ErrInvalidDevice = errors.New("invalid device")
