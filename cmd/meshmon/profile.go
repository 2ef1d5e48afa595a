package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
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
			start := time.Now()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("meshmon-%d-%s.pprof", os.Getpid(), start.UTC().Format("150405.000"))))
			if err != nil {
				fmt.Fprintln(os.Stderr, "meshmon: MESHMON_CPU_PROFILE_DIR: "+err.Error())
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				fmt.Fprintln(os.Stderr, "meshmon: MESHMON_CPU_PROFILE_DIR: "+err.Error())
				return
			}
			select {
			case <-done:
				pprof.StopCPUProfile()
				f.Close()
				return
			case <-time.After(2 * time.Second):
			}
			pprof.StopCPUProfile()
			f.Close()
		}
	}()
	return func() { close(done); <-stopped }
}
