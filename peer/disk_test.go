package peer

import (
	"testing"
	"time"
)

func TestDecideDisk(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const gb = int64(1) << 30
	const mb = int64(1) << 20
	for _, c := range []struct {
		name string
		obs  diskObs
		want diskAction
	}{
		{"healthy", diskObs{Enabled: true, Free: 10 * gb, Size: 100 * gb}, diskKeep},
		{"healthy on a nearly full disk: nothing failed yet", diskObs{Enabled: true, Free: mb, Size: 100 * gb}, diskKeep},
		{"healthy where the space is unknown", diskObs{Enabled: true}, diskKeep},
		{"a stream's write failed: no space", diskObs{Enabled: true, WriteErr: "write ...: no space left on device", Size: 100 * gb}, diskRefuse},
		{"a stream's write failed otherwise", diskObs{Enabled: true, WriteErr: "write ...: input/output error", Free: 10 * gb, Size: 100 * gb}, diskRefuse},
		{"the server turned JetStream off itself (a cluster out of space)", diskObs{Free: 0, Size: 100 * gb}, diskRefuse},
		{"refusing, still full", diskObs{Refusing: true, Free: 10 * mb, Size: 100 * gb}, diskKeep},
		{"refusing, just under the margin", diskObs{Refusing: true, Free: 64*mb - 1, Size: 100 * gb}, diskKeep},
		{"refusing, room again", diskObs{Refusing: true, Free: 64 * mb, Size: 100 * gb}, diskResume},
		{"refusing on a small disk: a tenth of it is room", diskObs{Refusing: true, Free: 7 * mb, Size: 64 * mb}, diskResume},
		{"refusing on a small disk, still full", diskObs{Refusing: true, Free: 6 * mb, Size: 64 * mb}, diskKeep},
		{"refusing, room, but the last try was just now", diskObs{Refusing: true, Free: gb, Size: 100 * gb, LastTry: now.Add(-time.Second)}, diskKeep},
		{"refusing, room, last try long enough ago", diskObs{Refusing: true, Free: gb, Size: 100 * gb, LastTry: now.Add(-diskRetryEvery)}, diskResume},
		{"refusing where the space is unknown: try, paced", diskObs{Refusing: true}, diskResume},
		{"refusing where the space is unknown, tried just now", diskObs{Refusing: true, LastTry: now.Add(-time.Millisecond)}, diskKeep},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decideDisk(c.obs, now); got != c.want {
				t.Fatalf("decideDisk(%+v) = %s, want %s", c.obs, got, c.want)
			}
		})
	}
}

func TestOutOfSpace(t *testing.T) {
	const mb = int64(1) << 20
	for _, c := range []struct {
		obs  diskObs
		want bool
	}{
		{diskObs{WriteErr: "write x.blk: no space left on device"}, true},
		{diskObs{WriteErr: "write x.blk: input/output error", Free: 10 * mb, Size: 64 * mb}, false},
		{diskObs{Free: mb, Size: 64 * mb}, true},
		{diskObs{}, false},
	} {
		if got := c.obs.outOfSpace(); got != c.want {
			t.Errorf("outOfSpace(%+v) = %v, want %v", c.obs, got, c.want)
		}
	}
}

// TestHealthPaced: the disk watch looks at the server's health on every
// poll while the disk is near full, and otherwise at most once per twenty
// times as long as a look took, within diskPoll and healthzMaxEvery.
func TestHealthPaced(t *testing.T) {
	for _, c := range []struct {
		took, want time.Duration
	}{
		{0, diskPoll},
		{time.Millisecond, diskPoll},
		{50 * time.Millisecond, time.Second},
		{time.Second, healthzMaxEvery},
	} {
		if got := healthEvery(c.took); got != c.want {
			t.Errorf("healthEvery(%s) = %s, want %s", c.took, got, c.want)
		}
	}
	if got := paceAfter(time.Second, 10*time.Millisecond); got != time.Second {
		t.Errorf("paceAfter(1s, 10ms) = %s, want 1s", got)
	}
	if got := paceAfter(time.Second, 100*time.Millisecond); got != 2*time.Second {
		t.Errorf("paceAfter(1s, 100ms) = %s, want 2s", got)
	}
	const gb, mb = int64(1) << 30, int64(1) << 20
	for _, c := range []struct {
		obs  diskObs
		want bool
	}{
		{diskObs{Free: 10 * gb, Size: 100 * gb}, false},
		{diskObs{Free: 256 * mb, Size: 100 * gb}, false},
		{diskObs{Free: 256*mb - 1, Size: 100 * gb}, true},
		{diskObs{Free: 25 * mb, Size: 64 * mb}, true},
		{diskObs{Free: 26 * mb, Size: 64 * mb}, false},
		{diskObs{}, false},
	} {
		if got := c.obs.nearFull(); got != c.want {
			t.Errorf("nearFull(%+v) = %v, want %v", c.obs, got, c.want)
		}
	}
}
