//go:build unix

package proccpu

import (
	"syscall"
	"time"
)

// Used is the user plus system CPU time this process has used, or 0 when
// the kernel does not say.
func Used() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
