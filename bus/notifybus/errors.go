package notifybus

import "errors"

// ErrNotFound is wrapped by the errors of removing a channel or rule
// that does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is wrapped by the errors of adding a channel or rule that
// exists, without replace.
var ErrExists = errors.New("exists (replace it with --replace)")

// errClaimed: another runner recorded an attempt of the item since this
// one read its log (a claim lost to it).
var errClaimed = errors.New("the item's delivery log moved: claimed by another runner")
