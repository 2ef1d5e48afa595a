package poller

import (
	"context"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
)

// followInventory keeps the scheduled devices equal to the site inventory.
// After each (re)connection the full replay is reconciled against what is
// scheduled, so removals made while the peer was away are not missed.
func (p *Poller) followInventory(ctx context.Context) {
	retry := backoff.New(minBackoff, maxBackoff)
	warned := false
	for ctx.Err() == nil {
		ch, err := p.inv.Watch(ctx)
		if err != nil {
			if !warned && ctx.Err() == nil {
				p.log.Warn("cannot read the device inventory from the peer; polling the cached devices until it answers", "err", err)
				warned = true
			}
			retry.Wait(ctx)
			continue
		}
		if warned {
			p.log.Info("following the device inventory again")
			warned = false
		}
		retry.Reset()
		seen := make(map[string]bool)
		synced := false
		for c := range ch {
			if p.group != nil {
				if !c.Synced && !c.Deleted && !synced {
					seen[c.Device.Name] = true
				}
				synced = synced || c.Synced
				p.groupChange(c, seen)
				continue
			}
			switch {
			case c.Synced:
				synced = true
				for name := range p.deviceNames() {
					if !seen[name] {
						p.remove(name)
					}
				}
			case c.Deleted:
				p.remove(c.Name)
			default:
				if !synced {
					seen[c.Device.Name] = true
				}
				p.upsert(&c.Device, true, c.Initial, false)
			}
		}
		// The watch ended (the peer went away): a first, short wait
		// before watching again.
		backoff.Sleep(ctx, backoff.Jitter(minBackoff))
	}
}

// heartbeat reports the poller to the registry until ctx is done.
func (p *Poller) heartbeat(ctx context.Context) {
	t := time.NewTicker(p.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		s := p.Stats()
		info := meshmon.PollerInfo{
			Name: p.cfg.Name, Site: p.cfg.Site, Tenant: p.cfg.Tenant, Version: p.cfg.Version, Instance: p.cfg.Instance,
			Started: p.start, LastSeen: p.cfg.Now(),
			Devices: s.Devices, Spooled: s.Spooled, Published: s.Published, Dropped: s.Dropped + s.Rejected + s.Corrupt,
			TrapsDropped: s.TrapsDropped, TrapsInvalid: s.TrapsInvalid,
		}
		hctx, cancel := context.WithTimeout(ctx, p.cfg.HeartbeatEvery)
		if err := p.reg.Heartbeat(hctx, info); err != nil && ctx.Err() == nil {
			p.log.Debug("heartbeat", "err", err)
		} else if err == nil {
			now := time.Now().UnixNano()
			if last := p.heartbeatOK.Swap(now); last != 0 && now-last > p.cfg.MemberTimeout.Nanoseconds() {
				// Back from a hang: the drainer may not have
				// noticed it yet.
				p.hung.Store(true)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			p.leave()
			return
		case <-t.C:
		}
	}
}

// leaver is a Registry a poller can leave on its way out, so that its
// group gives its devices to the others at once.
type leaver interface {
	Leave(ctx context.Context, site, name, instance string) error
}

func (p *Poller) leave() {
	l, ok := p.reg.(leaver)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.Leave(ctx, p.cfg.Site, p.cfg.Name, p.cfg.Instance); err != nil {
		p.log.Debug("leave the registry", "err", err)
	}
}
