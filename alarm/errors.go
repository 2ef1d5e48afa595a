package alarm

import "errors"

// ErrNotFound is wrapped by Set.Act when the alarm named does not exist.
var ErrNotFound = errors.New("no such alarm")

// ErrNotOpen is wrapped by Set.Act when an ack or clear names an alarm
// that is cleared already.
var ErrNotOpen = errors.New("alarm is not open")

// ErrNoChange is wrapped by Set.Act when the action would change nothing
// (an ack of an acknowledged alarm, an unack of one that is not).
var ErrNoChange = errors.New("nothing to change")

// ErrInvalidAction is wrapped by Action.Validate.
var ErrInvalidAction = errors.New("invalid action")

// ErrWindowNotFound is wrapped by the removal of a maintenance window that
// does not exist.
var ErrWindowNotFound = errors.New("maintenance window does not exist")

// ErrInvalidWindow is wrapped by Window.Validate.
var ErrInvalidWindow = errors.New("invalid maintenance window")
