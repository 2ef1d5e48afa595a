//go:build unix

package freeport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// held keeps the reservation files open, and so their locks held, for
// the life of the process.
var held []*os.File

// reserve takes port for network across the processes of this machine
// that use this package, until this process ends; ok is false if another
// process holds it. Where the reservation cannot be made at all (no temp
// dir to write), the port is taken unreserved, as before reservations.
// release gives up a reservation made for a port then found busy. mu is
// held.
func reserve(network string, port int) (release func(), ok bool) {
	dir := filepath.Join(os.TempDir(), "meshmon-freeport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return func() {}, true
	}
	f, err := os.OpenFile(filepath.Join(dir, network+"-"+strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return func() {}, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	held = append(held, f)
	return func() {
		held = held[:len(held)-1]
		_ = f.Close() // closing drops the lock
	}, true
}
