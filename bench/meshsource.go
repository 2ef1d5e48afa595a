package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// sourceWatch samples, at every site, the durable consumer central
// sources EVENTS through: how many deliveries wait for central's flow
// control reply (its acks) and how many stored events it has not
// delivered yet. A consumer at its MaxAckPending delivers nothing until
// central answers its flow control, so the samples say whether central's
// answers, rather than the link or the site, hold sourcing back.
type sourceWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	st     sourceStats
}

// sourceStats is what a sourceWatch saw.
type sourceStats struct {
	Samples       int    `json:"samples"`
	AtLimit       int    `json:"samples_at_max_ack_pending"` // a site's consumer at its MaxAckPending
	MaxAckPending int    `json:"max_ack_pending_limit"`
	MaxAckPend    int    `json:"ack_pending_max"`  // the most deliveries awaiting central's reply, any site
	MaxUndeliv    int    `json:"undelivered_max"`  // the most stored events not delivered yet, any site
	Errors        int    `json:"errors,omitempty"` // samples that failed
	LastErr       string `json:"last_error,omitempty"`
	// LongestAtLimit is the longest a site's consumer was seen at its
	// MaxAckPending having delivered nothing since: from the first sample
	// that found it so to the last before one that found it moved on.
	// Central answers flow control as it stores, so a healthy consumer
	// waits there a commit or two; one stalled on a flow-control request
	// nobody will answer waits for its heartbeats (docs/performance.md).
	LongestAtLimit time.Duration `json:"longest_at_limit_ns"`
}

func (s sourceStats) String() string {
	return fmt.Sprintf("%d samples of the sites' source consumers: deliveries awaiting central's flow-control reply at most %d (limit %d; at the limit in %d samples, at most %s at a time without delivering), stored events not yet delivered at most %d",
		s.Samples, s.MaxAckPend, s.MaxAckPending, s.AtLimit, s.LongestAtLimit.Round(time.Millisecond), s.MaxUndeliv) + s.errors()
}

func (s sourceStats) errors() string {
	if s.Errors == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d samples failed, the last: %s)", s.Errors, s.LastErr)
}

// watchSources starts a sourceWatch over sites, sampling every 50 ms.
func watchSources(ctx context.Context, sites []jetstream.JetStream) *sourceWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &sourceWatch{cancel: cancel}
	// Each site's consumer as last found at its limit: its delivered
	// sequence, and when a sample first found it there with that sequence
	// (zero: not at its limit).
	type atLimit struct {
		delivered uint64
		since     time.Time
	}
	stuck := make([]atLimit, len(sites))
	w.wg.Go(func() {
		for {
			for i, js := range sites {
				// The lookup is the consumer's info request: one a sample.
				c, err := js.PushConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
				if ctx.Err() != nil {
					return // stopped: a request cut short is no failed sample
				}
				if err != nil {
					w.noteErr(err)
					continue
				}
				info := c.CachedInfo()
				w.mu.Lock()
				w.st.Samples++
				w.st.MaxAckPending = info.Config.MaxAckPending
				w.st.MaxAckPend = max(w.st.MaxAckPend, info.NumAckPending)
				w.st.MaxUndeliv = max(w.st.MaxUndeliv, int(info.NumPending))
				if info.Config.MaxAckPending > 0 && info.NumAckPending >= info.Config.MaxAckPending {
					w.st.AtLimit++
					if at := stuck[i]; !at.since.IsZero() && at.delivered == info.Delivered.Consumer {
						w.st.LongestAtLimit = max(w.st.LongestAtLimit, time.Since(at.since))
					} else {
						stuck[i] = atLimit{delivered: info.Delivered.Consumer, since: time.Now()}
					}
				} else {
					stuck[i] = atLimit{}
				}
				w.mu.Unlock()
			}
			if waitCtx(ctx, 50*time.Millisecond) != nil {
				return
			}
		}
	})
	return w
}

func (w *sourceWatch) noteErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.Errors++
	w.st.LastErr = err.Error()
}

// stop ends the watch and returns what it saw.
func (w *sourceWatch) stop() sourceStats {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// settleSources waits, up to within, until every site's source consumer
// of EVENTS has delivered all it stores and has fewer deliveries awaiting
// central than it is made to allow (bus.SourceMaxAckPending; a keeper's
// prompt raises the limit by one for a moment) in two samples running, and returns how long that took. A catch-up can
// end with a consumer at its limit, its last flow-control request lost in
// the link's return, until central answers the stall a heartbeat later
// (docs/performance.md); a latency run started then times that stall, not
// the mesh at a steady rate.
func settleSources(ctx context.Context, sites []jetstream.JetStream, within time.Duration) (time.Duration, error) {
	t0 := time.Now()
	deadline := t0.Add(within)
	calm := 0
	for {
		settled := true
		for _, js := range sites {
			c, err := js.PushConsumer(ctx, bus.EventsStream, bus.SourceConsumer(bus.EventsStream))
			if err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				settled = false
				break
			}
			info := c.CachedInfo()
			if info.NumPending > 0 || info.NumAckPending >= bus.SourceMaxAckPending {
				settled = false
				break
			}
		}
		if settled {
			calm++
		} else {
			calm = 0
		}
		if calm == 2 {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return time.Since(t0), fmt.Errorf("the sites' source consumers did not settle within %s", within)
		}
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
	}
}
