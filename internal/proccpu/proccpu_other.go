//go:build !unix

package proccpu

import "time"

// Used is not measured on this OS: it is always 0, and benchmarks report
// 0 cores.
func Used() time.Duration { return 0 }
