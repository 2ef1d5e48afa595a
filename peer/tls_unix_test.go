//go:build unix

package peer

import (
	"os"
	"syscall"
	"testing"
)

// TestReloadOnSIGHUP: new certificate files are taken on a SIGHUP, with
// the watch off.
func TestReloadOnSIGHUP(t *testing.T) {
	k := newTestPKI(t)
	cfg := tlsConfig(t, "hup", k)
	cfg.TLS.Watch = -1
	p := startPeer(t, cfg)
	p.ReloadOnSIGHUP()
	fresh := k.issueTo("hup", cfg.TLS)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed(t, p, k, fresh)
}
