package peer

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestStatusTellsTruth: central's status shows a site whose link is cut as
// down with its backlog unknown (never 0), and 0 once it is back and
// caught up; the site's own status shows its link to central down, with
// the events central lacks, and up again with none.
func TestStatusTellsTruth(t *testing.T) {
	t.Parallel()
	start := time.Now()
	ctx := testCtx(t)
	cjs := peerJS(t, startPeer(t, centralConfig(t, "c1")))
	join, px := joinViaProxy(t, cjs, "paris")
	paris := peerJS(t, startPeer(t, siteConfig(t, "paris", join)))
	publishSite(t, paris, "paris", 0, 50)
	waitCount(t, cjs, "paris", 50, 20*time.Second)

	// centralSays is central's view of paris: up, and its lag (-1: unknown).
	centralSays := func() (bool, int64, error) {
		links, _, err := bus.CentralStatus(ctx, cjs)
		if err != nil {
			return false, 0, err
		}
		bus.AskSites(ctx, cjs, links)
		if len(links) != 1 || links[0].Name != "paris" {
			return false, 0, fmt.Errorf("sites %+v", links)
		}
		lag := int64(-1)
		if links[0].LagMessages != nil {
			lag = int64(*links[0].LagMessages)
		}
		return links[0].Up, lag, nil
	}
	// siteSays checks the site's view of its link: state, since a time
	// after the previous change (after), and the events not at central.
	var since time.Time
	siteSays := func(state string, events uint64, after time.Time) error {
		l := bus.SiteCentralLink(ctx, paris, "paris")
		if l.State != state || l.Events == nil || *l.Events != events || l.Samples == nil || *l.Samples != 0 {
			return fmt.Errorf("site's link %+v (events %v), want %s with %d events not at central", l, deref(l.Events), state, events)
		}
		if l.LastAck.IsZero() {
			return errors.New("no last acknowledgement")
		}
		if len(l.Peers) != 1 || l.Peers[0].Peer != "paris-1" || l.Peers[0].State != state {
			return fmt.Errorf("the peers' links %+v, want paris-1's, %s", l.Peers, state)
		}
		if l.Since.Before(after) || l.Since.After(time.Now()) {
			return fmt.Errorf("%s since %s, want after %s", state, l.Since, after)
		}
		since = l.Since
		return nil
	}
	eventually.NoError(t, 20*time.Second, "central to see the site up with lag 0", func() error {
		if up, lag, err := centralSays(); err != nil || !up || lag != 0 {
			return fmt.Errorf("central: up %v, lag %d, %v; want up with lag 0", up, lag, err)
		}
		return siteSays(bus.LinkUp, 0, start)
	})

	upSince := since
	cutAt := time.Now()
	px.Cut(true)
	publishSite(t, paris, "paris", 50, 7)
	eventually.NoError(t, 30*time.Second, "central to see the site down, its lag unknown", func() error {
		if up, lag, err := centralSays(); err != nil || up || lag != -1 {
			return fmt.Errorf("central: up %v, lag %d, %v; want down with lag unknown", up, lag, err)
		}
		return siteSays(bus.LinkDown, 7, cutAt)
	})
	if !upSince.Before(cutAt) {
		t.Fatalf("up since %s, not before the cut at %s", upSince, cutAt)
	}

	backAt := time.Now()
	px.Cut(false)
	waitCount(t, cjs, "paris", 57, time.Minute)
	eventually.NoError(t, 30*time.Second, "central to see the site up again with lag 0", func() error {
		if up, lag, err := centralSays(); err != nil || !up || lag != 0 {
			return fmt.Errorf("central: up %v, lag %d, %v; want up with lag 0", up, lag, err)
		}
		return siteSays(bus.LinkUp, 0, backAt)
	})
}

func deref(n *uint64) any {
	if n == nil {
		return nil
	}
	return *n
}
