package main

import (
	"runtime"
	"testing"
)

// TestPeerProcs: a process that runs a peer gets two more Ps than Go's
// default, once however often a command asks, and none when GOMAXPROCS is
// set in its environment.
func TestPeerProcs(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(def) })

	t.Setenv("GOMAXPROCS", "")
	procs := peerProcsFor()
	procs()
	procs()
	if got, want := runtime.GOMAXPROCS(0), def+extraPeerProcs; got != want {
		t.Errorf("GOMAXPROCS unset, asked twice: %d Ps, want %d", got, want)
	}

	runtime.GOMAXPROCS(def)
	t.Setenv("GOMAXPROCS", "1")
	peerProcsFor()()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Errorf("GOMAXPROCS set by the operator: %d Ps, want %d (left alone)", got, def)
	}
}
