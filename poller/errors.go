package poller

import "errors"

// ErrCorruptEntry is wrapped by DrainOnce when the spool held an entry that
// cannot be decoded: it is dropped (nothing can ever send it) and counted in
// Stats.Corrupt, apart from the messages the peer refused.
var ErrCorruptEntry = errors.New("corrupt spool entry")
