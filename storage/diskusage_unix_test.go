//go:build unix

package storage

import (
	"os"
	"syscall"
)

// diskUsage is what fi's file takes on disk: its blocks.
func diskUsage(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
