package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshmon/meshmon/bench"
)

// startProfile writes CPU profiles of this process to
// $MESHMON_CPU_PROFILE_DIR, one file per two seconds
// (meshmon-<pid>-<hhmmss.mmm>.pprof, named by when it starts), for finding
// where a benchmark of several processes spends its time in a window of
// it. A process killed loses only its last window. It does nothing when
// the variable is unset.
func startProfile() func() {
	dir := os.Getenv("MESHMON_CPU_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			name := fmt.Sprintf("meshmon-%d-%s.pprof", os.Getpid(), time.Now().UTC().Format("150405.000"))
			stop, err := bench.StartCPUProfile(filepath.Join(dir, name))
			if err != nil {
				fmt.Fprintln(os.Stderr, "meshmon: MESHMON_CPU_PROFILE_DIR: "+err.Error())
				return
			}
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
			stop()
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	return func() { close(done); <-stopped }
}
