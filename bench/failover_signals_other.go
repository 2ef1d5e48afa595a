//go:build !unix

package bench

import "syscall"

// The signals 'meshmon bench failover --signal' sends: on this OS a
// process can be killed, not stopped, and a kill is all a term can be.
var (
	sigStop, sigCont    = syscall.Signal(-1), syscall.Signal(-2) // never sent
	failoverSignals     = map[string]syscall.Signal{"kill": syscall.SIGKILL, "term": syscall.SIGTERM}
	failoverSignalNames = "kill or term"
)
