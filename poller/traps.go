package poller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// queuedTrap is a received trap waiting to be committed, with the ack of an
// inform (nil for a trap).
type queuedTrap struct {
	tr  meshmon.Trap
	ack func()
}

// onTrap is the trap listener's handler: it only queues, so the listener
// never waits on the spool. It reports whether the trap was kept; a dropped
// inform is not acknowledged, so its sender sends it again.
func (p *Poller) onTrap(tr meshmon.Trap, ack func()) bool {
	p.trapsIn.Add(1)
	select {
	case p.traps <- queuedTrap{tr, ack}:
		return true
	default:
		if p.trapsDropped.Add(1)%100 == 1 {
			p.log.Warn("trap queue full; dropping traps (informs are not acknowledged, so their senders retry)", "dropped", p.trapsDropped.Load())
		}
		return false
	}
}

// trapBatch is the most traps committed in one spool transaction.
const trapBatch = 256

// handleTraps turns queued traps into events, committing them in batches so
// a trap storm shares fsyncs, and acknowledges informs once they are
// committed. When ctx is done it shuts down in order: stop the listener's
// intake, commit and acknowledge what is queued, and leave closing the
// socket to Run.
func (p *Poller) handleTraps(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			if p.trap != nil {
				p.trap.Stop()
			}
			for {
				batch := p.queuedTraps(nil)
				if len(batch) == 0 {
					return
				}
				p.commitTraps(batch)
			}
		case q := <-p.traps:
			p.commitTraps(p.queuedTraps([]queuedTrap{q}))
		}
	}
}

// queuedTraps adds to batch whatever is queued, up to trapBatch.
func (p *Poller) queuedTraps(batch []queuedTrap) []queuedTrap {
	for len(batch) < trapBatch {
		select {
		case q := <-p.traps:
			batch = append(batch, q)
		default:
			return batch
		}
	}
	return batch
}

// commitTraps spools the events of traps and then acknowledges the informs
// among them. If the spool cannot take them the informs stay unacknowledged
// and their senders retry.
func (p *Poller) commitTraps(traps []queuedTrap) {
	now := p.cfg.Now()
	msgs := make([]meshmon.Message, 0, len(traps))
	for _, q := range traps {
		msg, err := p.trapMessage(q.tr, now)
		if err != nil {
			p.log.Error("build trap event", "from", q.tr.From, "err", err)
			continue
		}
		msgs = append(msgs, msg)
	}
	if err := p.commit(msgs, nil); err != nil {
		return
	}
	p.trapsCommitted.Add(uint64(len(msgs)))
	for _, q := range traps {
		if q.ack != nil {
			q.ack()
		}
	}
}

// trapMessage builds the event of one trap. A trap from an address that is
// no device of the inventory is still kept, under a device name made from
// the address ("ip-192-0-2-7"). The message id covers the trap's content and
// the sender's uptime, so a resent copy of the same trap is stored once.
func (p *Poller) trapMessage(tr meshmon.Trap, now time.Time) (meshmon.Message, error) {
	p.mu.Lock()
	name, known := p.byAddr[tr.From]
	var dev meshmon.Device
	if known {
		dev = *p.devices[name].dev
	}
	p.mu.Unlock()
	if !known && p.group != nil {
		dev, known = p.deviceAt(tr.From)
	}
	if !known {
		dev = meshmon.Device{Name: addrName(tr.From), Address: tr.From}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%d|%d", tr.From, tr.OID, tr.Uptime, tr.Generic, tr.Specific)
	for _, v := range tr.Varbinds {
		fmt.Fprintf(h, "|%s=%s", v.OID, v.Value)
	}
	slot := time.Unix(0, 0)
	if tr.Uptime == 0 {
		slot = now.Truncate(time.Second)
	}
	// The community is a credential: it is not published to subscribers.
	tr.Community = ""
	label := tr.OID
	if l := tr.Labels["trap"]; l != "" {
		label = l
	}
	data := meshmon.EventData{
		Kind:    meshmon.KindTrap,
		Check:   "trap",
		Message: fmt.Sprintf("trap %s from %s", label, tr.From),
		Trap:    &tr,
	}
	return p.eventMessage(&dev, slot, now, "trap/"+hex.EncodeToString(h.Sum(nil)[:16]), data)
}

// addrName turns an address into a device name for traps from unknown senders.
func addrName(addr string) string {
	r := strings.NewReplacer(".", "-", ":", "-", "%", "-")
	name := "ip-" + strings.ToLower(r.Replace(addr))
	if len(name) > meshmon.MaxNameLen {
		name = name[:meshmon.MaxNameLen]
	}
	return name
}
