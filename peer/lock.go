package peer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockName is the file in a data dir that a running peer holds locked.
const lockName = "LOCK"

// dirLock is an exclusive, advisory lock on a data dir, held for the life of
// the peer. The OS releases it when the process dies, SIGKILL included, so
// a crash never leaves a stale lock behind.
type dirLock struct {
	f *os.File
}

// lockDataDir creates dir if needed, checks that it is a writable directory
// and takes its lock. It fails with an error wrapping ErrDataDirLocked, naming
// the holder's pid, when another process holds it.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, unwrapPathError(err))
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, unwrapPathError(err))
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("data dir %s: %w%s; give each peer its own --data-dir", dir, ErrDataDirLocked, holder(path))
		}
		return nil, fmt.Errorf("data dir %s: lock %s: %w", dir, path, err)
	}
	// Record who holds it, for the message another process prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// holder is " by pid N" from the lock file, or "" if it says nothing.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(pid); err != nil {
		return ""
	}
	return " by pid " + pid
}

// unlock releases the lock. It is safe on a nil lock.
func (l *dirLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = unlockFile(l.f)
	_ = l.f.Close()
	l.f = nil
}

// unwrapPathError drops the *PathError's own path: the caller names it.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}
