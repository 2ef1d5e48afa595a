package poller

import "errors"

// ErrCorruptEntry is wrapped by DrainOnce when the spool held an entry that
// cannot be decoded: it is dropped (nothing can ever send it) and counted in
// Stats.Corrupt, apart from the messages the peer refused.
var ErrCorruptEntry = errors.New("corrupt spool entry")

// ErrTrapUsers is wrapped by LoadTrapUsers, ParseTrapUsers and
// TrapUsers.Validate when the trap users file cannot be read or breaks a
// rule; the error names the field and the rule.
var ErrTrapUsers = errors.New("trap users")

// ErrInvalidConfig is wrapped by every error of Config.Validate and
// ParseICMPMode; the error names the field and the rule.
var ErrInvalidConfig = errors.New("invalid config")

// ErrTaskNotOwned is returned by Poller.Task for a device task of a device
// this poller does not poll: another member of its group owns it.
var ErrTaskNotOwned = errors.New("device not owned by this poller")

// ErrTaskFailed is wrapped by Poller.Task when the task ran and failed: an
// agent that does not answer, an address no credential opens.
var ErrTaskFailed = errors.New("task failed")
