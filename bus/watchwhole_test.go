package bus

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWatchAllWholeThroughRestartedPeer: a watch of the inventory opened
// through a peer started again after devices were added while it was down
// delivers every device as its initial values (a plain WatchAll there
// marked its initial values done after 0 of 300 in three of three runs,
// and delivered the 300 later as changes).
func TestWatchAllWholeThroughRestartedPeer(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := c.ensureStreams(ctx)
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	c.srvs[2].Shutdown()
	c.srvs[2].WaitForShutdown()
	const n = 300
	for i := range n {
		if _, err := inv.Put(ctx, testDevice(fmt.Sprintf("sw%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.srvs[2] = c.start(2)
	_, rjs := connect(t, c.srvs[2].ClientURL())
	until := time.Now().Add(5 * time.Second)
	watches := 0
	for time.Now().Before(until) {
		rinv, err := OpenInventory(ctx, rjs)
		if err != nil {
			continue
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		ch, err := rinv.Watch(wctx)
		if err != nil {
			wcancel()
			continue
		}
		initial := 0
	read:
		for c := range ch {
			switch {
			case c.Synced:
				break read
			case c.Initial:
				initial++
			}
		}
		wcancel()
		watches++
		if initial != n {
			t.Fatalf("watch %d through the restarted peer: %d initial devices, want %d", watches, initial, n)
		}
	}
	t.Logf("%d watches through the restarted peer, each whole", watches)
}
