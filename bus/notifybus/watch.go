package notifybus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
)

// watchConfig keeps r.conf the config bucket's channels and rules: one
// watcher for the runner's life (made again if it ends), so the runner
// does not read the bucket at every tick. r.ready is closed once the
// first complete read is in.
func (r *runner) watchConfig(ctx context.Context) {
	b := backoff.New(r.cfg.RetryFirst/4+time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		if err := r.watchOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("notify: config watch", "err", err)
		}
		b.Wait(ctx)
	}
}

func (r *runner) watchOnce(ctx context.Context) error {
	w, err := bus.WatchAllWhole(ctx, r.st.js, r.st.cfg)
	if err != nil {
		return err
	}
	defer w.Stop()
	vals := map[string][]byte{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e != nil {
				if e.Operation() == jetstream.KeyValuePut {
					vals[e.Key()] = e.Value()
				} else {
					delete(vals, e.Key())
				}
				if initial {
					continue
				}
			}
			initial = false
			c, err := settingsFrom(vals)
			if err != nil {
				r.log.Error("notify: bad configuration entry, previous configuration kept", "err", err)
				continue
			}
			r.conf.Store(&c)
			r.touch(true, true)
			r.readyOnce.Do(func() { close(r.ready) })
		}
	}
}
