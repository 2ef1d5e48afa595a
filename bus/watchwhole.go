package bus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/backoff"
)

// A watch is an ordered consumer, which nats-server places on any replica
// of the bucket, one still catching up included (a restarted member's own
// in a site cluster). There it marks its initial values done early, short
// of the bucket, and delivers the rest later as changes: through a
// restarted server, a watch of 300 devices marked them done after 0
// (TestWatchAllWholeThroughRestartedPeer). A poller group leader would
// then assign no device, and a poller drop every device, until the rest
// came.

// shortWatchTries bounds the watches WatchWhole opens while each is
// placed on a replica that reads short (about 5 s of tries); the last is
// taken as it is, its late values coming as changes.
const shortWatchTries = 12

// WatchAllWhole is WatchWhole of every key of kv.
func WatchAllWhole(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	return WatchWhole(ctx, js, kv, ">")
}

// WatchWhole opens a watch of the keys of kv that keys matches
// (deletions included) and returns it once its initial values cover the
// keys the stream's leader counted just before; a watch that reads short
// is stopped and opened again, placed anew. Its initial values are
// delivered again by the returned watch, then the done mark (nil), then
// its changes. A user not allowed the stream's info gets the first watch
// as it is.
func WatchWhole(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, keys string) (jetstream.KeyWatcher, error) {
	stream := "KV_" + kv.Bucket()
	short := backoff.New(50*time.Millisecond, 500*time.Millisecond)
	for try := 1; ; try++ {
		filter := "" // every key: the leader's count of subjects
		if keys != ">" {
			filter = "$KV." + kv.Bucket() + "." + keys
		}
		want, counted := leaderKeys(ctx, js, stream, filter)
		w, err := kv.Watch(ctx, keys)
		if err != nil || !counted {
			return w, err
		}
		var initial []jetstream.KeyValueEntry
	read:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return nil, errors.New("watch closed before its initial values")
				}
				if e == nil {
					break read
				}
				initial = append(initial, e)
			case <-ctx.Done():
				_ = w.Stop()
				return nil, ctx.Err()
			}
		}
		if uint64(len(initial)) >= want || try == shortWatchTries {
			return newReplayWatcher(ctx, w, initial), nil
		}
		_ = w.Stop()
		if !short.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

// replayWatcher delivers a watch's initial values, read already, then its
// done mark, then what the watch delivers, until the watch ends, is
// stopped, or the context it was opened with is done. (The last does not
// wait for the watch to end by itself: a watch whose connection closed
// while the processor's test stopped it was seen never to close its
// channel, and the processor waited for it for the rest of the run.)
type replayWatcher struct {
	jetstream.KeyWatcher
	ch   chan jetstream.KeyValueEntry
	done chan struct{}
	once sync.Once
}

func newReplayWatcher(ctx context.Context, w jetstream.KeyWatcher, initial []jetstream.KeyValueEntry) *replayWatcher {
	r := &replayWatcher{KeyWatcher: w, ch: make(chan jetstream.KeyValueEntry, 256), done: make(chan struct{})}
	go r.feed(ctx, initial)
	return r
}

func (r *replayWatcher) feed(ctx context.Context, initial []jetstream.KeyValueEntry) {
	defer close(r.ch)
	send := func(e jetstream.KeyValueEntry) bool {
		select {
		case r.ch <- e:
			return true
		case <-r.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
	for i, e := range initial {
		initial[i] = nil // fed: not kept for as long as the watch runs
		if !send(e) {
			return
		}
	}
	if !send(nil) {
		return
	}
	for {
		select {
		case e, ok := <-r.KeyWatcher.Updates():
			if !ok || !send(e) {
				return
			}
		case <-r.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (r *replayWatcher) Updates() <-chan jetstream.KeyValueEntry { return r.ch }

func (r *replayWatcher) Stop() error {
	r.once.Do(func() { close(r.done) })
	return r.KeyWatcher.Stop()
}
