package peer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// fitLimits checks the size limits of the EVENTS and METRICS streams the
// peer is about to make against the room JetStream has on this server (its
// max store less what its streams reserve already; nats-server refuses a
// stream whose MaxBytes exceed it with "insufficient storage resources
// available"). A stream that exists already keeps its limit, reserved
// already. With FitLimits the new streams' limits are lowered to fit, and
// the peer says so in one line; without, it fails with an error wrapping
// ErrStoreTooSmall that names the flags to set. p.srv is set; p.mu may be
// held.
func (p *Peer) fitLimits(ctx context.Context, js jetstream.JetStream, lim bus.StreamLimits) (bus.StreamLimits, error) {
	jsc := p.srv.JetStreamConfig()
	if jsc == nil || jsc.MaxStore <= 0 {
		return lim, nil
	}
	_, reserved, err := p.srv.JetStreamReservedResources()
	if err != nil {
		return lim, nil
	}
	room := jsc.MaxStore - reserved
	type limit struct {
		stream string
		max    *int64
	}
	var missing []limit
	var need int64
	for _, l := range []limit{{bus.EventsStream, &lim.EventsMaxBytes}, {bus.MetricsStream, &lim.MetricsMaxBytes}} {
		s, err := js.Stream(ctx, l.stream)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if *l.max > 0 {
				missing = append(missing, l)
				need += *l.max
			}
		case err != nil:
			return lim, fmt.Errorf("stream %s: %w", l.stream, err)
		case p.cfg.FitLimits && *l.max != s.CachedInfo().Config.MaxBytes:
			// A limit fitted at an earlier start stays as it was made.
			*l.max = s.CachedInfo().Config.MaxBytes
		}
	}
	if need <= room {
		return lim, nil
	}
	where := "the " + meshmon.ShowSize(jsc.MaxStore) + " JetStream may use in " + p.cfg.StoreDir()
	if p.cfg.MaxStore == 0 {
		where += " (three quarters of the disk's free space at start)"
	}
	if reserved > 0 {
		where += ", " + meshmon.ShowSize(reserved) + " of it reserved"
	}
	if !p.cfg.FitLimits {
		more := "give the data dir more room"
		if p.cfg.MaxStore != 0 {
			more = "raise --max-store"
		}
		return lim, fmt.Errorf("%w: EVENTS and METRICS size limits (%s in all) do not fit %s; set smaller --events-max-bytes and --metrics-max-bytes (%s in all at most), or %s",
			ErrStoreTooSmall, meshmon.ShowSize(need), where, meshmon.ShowSize(max(room, 0)), more)
	}
	// Two fifths of the room each, in whole MiB: EVENTS and METRICS
	// together leave a fifth for the KV buckets.
	share := room * 2 / 5 / (1 << 20) * (1 << 20)
	if share < 1<<20 {
		return lim, fmt.Errorf("%w: %s leaves no room for EVENTS and METRICS (at least 1 MiB each); give the data dir more room", ErrStoreTooSmall, where)
	}
	var made []string
	for _, l := range missing {
		if *l.max > share {
			*l.max = share
			made = append(made, l.stream+" "+meshmon.ShowSize(share))
		}
	}
	p.log.Warn(fmt.Sprintf("the default stream size limits do not fit %s: making %s; set --events-max-bytes and --metrics-max-bytes to choose", where, strings.Join(made, " and ")))
	return lim, nil
}
