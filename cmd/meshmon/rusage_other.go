//go:build !unix

package main

import "time"

// cpuTime is not measured on this OS: benchmarks report 0 cores.
func cpuTime() time.Duration { return 0 }
