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
// and delivered the 300 later as changes); so does a watch of one site's
// pollers, as a group's members.
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
	// Heartbeats of two sites' pollers: a watch of one site's.
	pollers, err := js.KeyValue(ctx, PollersBucket)
	if err != nil {
		t.Fatal(err)
	}
	const paris = 40
	for i := range paris + 10 {
		site := "paris"
		if i >= paris {
			site = "lyon"
		}
		if _, err := pollers.Put(ctx, PollerKey(site, fmt.Sprintf("p%02d", i)), []byte("{}")); err != nil {
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
		rkv, err := rjs.KeyValue(ctx, PollersBucket)
		if err != nil {
			continue
		}
		wctx, wcancel = context.WithTimeout(ctx, 20*time.Second)
		w, err := WatchWhole(wctx, rjs, rkv, PollerKey("paris", "*"))
		if err != nil {
			wcancel()
			continue
		}
		initial = 0
		for e := range w.Updates() {
			if e == nil {
				break
			}
			initial++
		}
		_ = w.Stop()
		wcancel()
		if initial != paris {
			t.Fatalf("watch %d of paris' pollers through the restarted peer: %d initial values, want %d", watches, initial, paris)
		}
	}
	t.Logf("%d watches of the devices and of a site's pollers through the restarted peer, each whole", watches)
}
