package main

import (
	"os"
	"runtime"
	"sync"
)

// extraPeerProcs is how many Ps a process that runs a peer has beyond Go's
// default (one per core it may use).
//
// A peer's goroutines spend much of their time in fsync: with every write
// synced, the stream loops, Raft's WAL and the consumers' state call it
// all the time (the six peers of `meshmon bench mesh` about 1,400 times a
// second at 5,000 events/s), and a goroutine in a syscall keeps its P
// until the runtime hands it to another thread. With one P a core, a
// garbage collection's mark worker and a goroutine or two in fsync leave
// the rest of the pipeline no P to run on, however idle the cores: on 2
// cores that bench had every hop stall for each collection's mark phase
// (200 to 400 ms); with two more Ps the median p99 of its runs fell from
// 301 to 120 ms, and a CPU-bound catch-up's rate by 12 %
// (docs/performance.md, "The latency tail was the collector's").
// Measured on 2 cores only.
const extraPeerProcs = 2

// peerProcs gives this process extraPeerProcs more Ps than Go's default,
// for the commands that run a peer in it; once, however often it is
// called (a test runs several commands in one process). GOMAXPROCS in the
// environment wins: an operator who set it keeps it.
var peerProcs = peerProcsFor()

// peerProcsFor returns a peerProcs of its own (for tests).
func peerProcsFor() func() {
	return sync.OnceFunc(func() {
		if os.Getenv("GOMAXPROCS") != "" {
			return
		}
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + extraPeerProcs)
	})
}
