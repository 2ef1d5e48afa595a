package peer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/peer"
)

// startMesh starts a central cluster of n peers (internal/meshtest),
// closed at the end of the test; configure, if set, changes each peer's
// config first.
func startMesh(t *testing.T, n int, configure func(int, *peer.Config)) *meshtest.Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := meshtest.StartMesh(ctx, meshtest.MeshConfig{Dir: t.TempDir(), Prefix: "t-", Central: n, Configure: configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestScaledCentralKeepsSourcing: raising the replicas of central's streams
// while they source (a central grown to three members) must not stall the
// sources, nor make them send again what central holds. The streams are
// brought down to one replica by hand first, as a central grown from one
// member has them; the upkeep raises them to three.
func TestScaledCentralKeepsSourcing(t *testing.T) {
	t.Parallel()
	m := startMesh(t, 3, func(_ int, cfg *peer.Config) {
		// A short dedup window, so that an old event sent again would
		// be stored again and show.
		cfg.Limits.EventsDuplicates = time.Second
	})
	ctx := context.Background()
	cjs := m.CentralJS
	_, pjs, err := m.AddSite(ctx, "paris")
	if err != nil {
		t.Fatal(err)
	}
	// Each read of a bucket makes a consumer whose leader may be another
	// peer, which may not take pull requests yet when the first arrives
	// (the server answers 503, no responders): the read asks again. (AddSite
	// failed so here, "list sites: nats: no responders available for
	// request", in one go test ./... run of eight.)
	for range 40 {
		if _, err := bus.Sites(ctx, cjs); err != nil {
			t.Fatal(err)
		}
	}
	peer.PublishSite(t, pjs, "paris", 0, 100)
	peer.WaitCount(t, cjs, "paris", 100, 20*time.Second)

	s, err := cjs.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Replicas = 1
	if _, err := cjs.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	peer.PublishSite(t, pjs, "paris", 100, 50)
	peer.WaitCount(t, cjs, "paris", 150, 20*time.Second)
	eventually.NoError(t, 30*time.Second, "the upkeep to raise EVENTS to three replicas", func() error {
		s, err := cjs.Stream(ctx, bus.EventsStream)
		if err != nil {
			return err
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			return fmt.Errorf("EVENTS has %d replicas, want the upkeep to raise it to 3", r)
		}
		return nil
	})
	peer.PublishSite(t, pjs, "paris", 150, 100)
	t.Logf("central caught up %s after its stream was scaled to three replicas", peer.WaitCount(t, cjs, "paris", 250, 30*time.Second).Round(time.Millisecond))
	// A last event, sourced in order after anything the scaling sent
	// again, closes the check: 251 and no more.
	peer.PublishSite(t, pjs, "paris", 250, 1)
	peer.WaitCount(t, cjs, "paris", 251, 20*time.Second)
}

// TestRemovePeer: a central peer lost for good is removed from its
// cluster through another peer, and the replicas it held move to the
// member left over; a running peer and an unknown name are refused.
func TestRemovePeer(t *testing.T) {
	t.Parallel()
	central := startMesh(t, 4, nil).Central
	ctx := context.Background()
	replicas := func(js jetstream.JetStream) ([]string, error) {
		s, err := js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return nil, err
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" {
			return nil, errors.New("EVENTS has no leader")
		}
		names := []string{ci.Leader}
		for _, r := range ci.Replicas {
			if r.Offline || !r.Current {
				return nil, fmt.Errorf("EVENTS replica %s is not current", r.Name)
			}
			names = append(names, r.Name)
		}
		if len(names) != 3 {
			return nil, fmt.Errorf("EVENTS is on %v, want three peers", names)
		}
		return names, nil
	}
	var held []string
	js0 := peer.PeerJS(t, central[0])
	eventually.NoError(t, time.Minute, "EVENTS on three current peers", func() (err error) {
		held, err = replicas(js0)
		return err
	})
	// The lost peer holds a replica; one that stays is asked.
	var lost, asked *peer.Peer
	for _, p := range central {
		switch {
		case lost == nil && slices.Contains(held, p.Config().Name):
			lost = p
		case asked == nil:
			asked = p
		}
	}
	nc, err := asked.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := bus.RemovePeer(ctx, nc, "c9", false); !errors.Is(err, bus.ErrNoSuchPeer) {
		t.Fatalf("removing an unknown peer: got %v, want ErrNoSuchPeer", err)
	}
	if _, err := bus.RemovePeer(ctx, nc, lost.Config().Name, false); !errors.Is(err, bus.ErrPeerUp) {
		t.Fatalf("removing a running peer: got %v, want ErrPeerUp", err)
	}
	lostName := lost.Config().Name
	lost.Close()
	var left []string
	eventually.NoError(t, time.Minute, "the lost peer's removal", func() (err error) {
		left, err = bus.RemovePeer(ctx, nc, lostName, false)
		return err
	})
	if len(left) != 3 || slices.Contains(left, lostName) {
		t.Fatalf("members left %v, want three without %s", left, lostName)
	}
	js := peer.PeerJS(t, asked)
	eventually.NoError(t, time.Minute, "EVENTS to leave the removed peer", func() error {
		names, err := replicas(js)
		if err == nil && slices.Contains(names, lostName) {
			err = fmt.Errorf("EVENTS is still on %v", names)
		}
		return err
	})
	// The removed peer's leaf URL leaves the join bucket: the removal
	// deletes it, and where that delete fails (the bucket moving its
	// replica off the removed peer), the meta leader's upkeep does; an
	// entry of a peer that never was a member (written here) goes too.
	if err := bus.PublishJoin(ctx, js, "ghost", bus.JoinInfo{Central: []string{"nats-leaf://ghost:7422"}}); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, time.Minute, "the join info to list the three peers left", func() error {
		ji, err := bus.Join(ctx, js)
		if err == nil && len(ji.Central) != 3 {
			err = fmt.Errorf("join info lists %v, want the three peers left", ji.Central)
		}
		return err
	})
}
