//go:build !linux && !darwin

package peer

// diskSpace cannot tell here: the disk watch then starts JetStream again
// every diskRetryEvery until it stays up.
func diskSpace(string) (free, size int64) { return 0, 0 }
