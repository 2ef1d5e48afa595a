package sim

import "errors"

// Sentinel errors. Match them with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error that Config.Validate returns.
	ErrInvalidConfig = errors.New("invalid simulator config")
	// ErrUnknownAgent is returned when a name matches no simulated agent.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrUnknownInterface is returned for an ifIndex the agent does not have.
	ErrUnknownInterface = errors.New("unknown interface")
	// ErrAgentDown is returned by trap sends while the agent is down.
	ErrAgentDown = errors.New("agent is down")
	// ErrNotStarted is returned when an operation needs a bound socket
	// before Sim.Start has run.
	ErrNotStarted = errors.New("simulator not started")
	// ErrClosed is returned by operations on a closed simulator or agent.
	ErrClosed = errors.New("simulator closed")
	// ErrBadTrapTarget is returned when a trap target or version is not usable.
	ErrBadTrapTarget = errors.New("bad trap target")
)
