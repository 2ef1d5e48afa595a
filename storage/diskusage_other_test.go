//go:build !unix

package storage

import "os"

// diskUsage is fi's size where the blocks a file takes are not known.
func diskUsage(fi os.FileInfo) int64 { return fi.Size() }
