//go:build unix

package bench

import "syscall"

// The signals 'meshmon bench failover --signal' sends.
var (
	sigStop, sigCont    = syscall.SIGSTOP, syscall.SIGCONT
	failoverSignals     = map[string]syscall.Signal{"kill": syscall.SIGKILL, "term": syscall.SIGTERM, "stop": sigStop}
	failoverSignalNames = "kill, term or stop"
)
