//go:build linux || darwin

package peer

import "syscall"

// diskSpace returns what the file system holding dir has free for an
// unprivileged writer, and its size, in bytes; 0, 0 when it cannot tell.
func diskSpace(dir string) (free, size int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize)
}
