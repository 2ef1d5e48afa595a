package peer

import "errors"

// ErrInvalidConfig is wrapped by every error that Config.Validate returns.
var ErrInvalidConfig = errors.New("invalid peer config")

// ErrAddrInUse is wrapped by Start when the listen address is taken.
var ErrAddrInUse = errors.New("address already in use")

// ErrNotReady is wrapped by Start when the server or JetStream did not come
// up before the context was done or the start timeout passed.
var ErrNotReady = errors.New("server not ready")

// ErrNotStarted is returned by InProcessConn before Start has succeeded or
// after Close.
var ErrNotStarted = errors.New("peer not started")

// ErrDataDirLocked is wrapped by Start when another process (or another
// Peer in this one) runs on the same data dir. Two servers on one JetStream
// store corrupt it and lose acknowledged messages.
var ErrDataDirLocked = errors.New("data dir is in use by another peer")

// ErrDataDir is wrapped by Start when the data dir cannot hold a JetStream
// store: not a directory, not writable, on a read-only file system.
var ErrDataDir = errors.New("data dir unusable")

// ErrOperatorMode is returned by InProcessConn on a peer in operator mode:
// it has no account of its own to connect to.
var ErrOperatorMode = errors.New("peer runs in operator mode")

// ErrStoreTooSmall is wrapped by Start when the streams' size limits do not
// fit the storage JetStream may use, and the peer may not lower them
// (Config.FitLimits). Its message names the flags to set.
var ErrStoreTooSmall = errors.New("store too small for the streams' size limits")
