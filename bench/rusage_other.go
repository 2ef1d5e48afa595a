//go:build !unix

package bench

import "time"

// cpuTime is not measured on this OS: benchmarks report 0 cores.
func cpuTime() time.Duration { return 0 }
