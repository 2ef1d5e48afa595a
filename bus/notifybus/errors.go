package notifybus

import "errors"

// ErrNotFound is wrapped by the errors of removing a channel or rule
// that does not exist.
var ErrNotFound = errors.New("not found")
