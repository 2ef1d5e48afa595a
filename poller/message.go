package poller

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshmon/meshmon"
)

// kindFor maps a check's state change to an event kind.
func kindFor(check, to string) string {
	up := to == stateUp
	switch {
	case check == meshmon.CheckICMP && up:
		return meshmon.KindNodeUp
	case check == meshmon.CheckICMP:
		return meshmon.KindNodeDown
	case check == meshmon.CheckSNMP && up:
		return meshmon.KindSNMPReachable
	case check == meshmon.CheckSNMP:
		return meshmon.KindSNMPUnreachable
	case up:
		return meshmon.KindIfUp
	default:
		return meshmon.KindIfDown
	}
}

func severityFor(kind string) string {
	switch kind {
	case meshmon.KindNodeDown:
		return meshmon.SeverityCritical
	case meshmon.KindSNMPUnreachable, meshmon.KindIfDown:
		return meshmon.SeverityMajor
	case meshmon.KindReboot, meshmon.KindFlapping:
		return meshmon.SeverityWarning
	case meshmon.KindTrap:
		return meshmon.SeverityInfo
	default:
		return meshmon.SeverityCleared
	}
}

// eventMessage builds the outgoing message of one event. The message id is a
// pure function of what was observed: tenant, site, device, the check and
// kind, and the observation slot.
//
// key, when not empty, replaces check and kind in the id (traps use a hash
// of their content).
func (p *Poller) eventMessage(d *meshmon.Device, slot, at time.Time, key string, data meshmon.EventData) (meshmon.Message, error) {
	data.Tenant, data.Site, data.Device, data.Poller = p.cfg.Tenant, p.cfg.Site, d.Name, p.cfg.Name
	data.Parent = d.Parent
	data.Assignment = p.assignRev.Load()
	if data.Address == "" {
		data.Address = d.Address
	}
	if data.Severity == "" {
		data.Severity = severityFor(data.Kind)
	}
	if key == "" {
		key = data.Check + "/" + data.Kind
	}
	id := meshmon.MsgID(p.cfg.Tenant, p.cfg.Site, d.Name, "ev/"+key, slot)
	ev := meshmon.Event{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          p.source,
		Type:            meshmon.EventTypePrefix + data.Kind,
		Time:            at.UTC(),
		Subject:         d.Name,
		DataContentType: "application/json",
		Data:            data,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return meshmon.Message{}, fmt.Errorf("encode event: %w", err)
	}
	return meshmon.Message{Stream: meshmon.StreamEvents, Site: p.cfg.Site, Device: d.Name, Kind: data.Kind, Time: ev.Time, ID: id, Data: b}, nil
}

// sampleMessage builds the outgoing message of one check's metric samples.
// It fills in s's time, names and assignment.
func (p *Poller) sampleMessage(d *meshmon.Device, slot, at time.Time, s *meshmon.Sample) (meshmon.Message, error) {
	s.Time, s.Tenant, s.Site, s.Device, s.Poller = at.UTC(), p.cfg.Tenant, p.cfg.Site, d.Name, p.cfg.Name
	s.Assignment = p.assignRev.Load()
	b, err := json.Marshal(s)
	if err != nil {
		return meshmon.Message{}, fmt.Errorf("encode sample: %w", err)
	}
	id := meshmon.MsgID(p.cfg.Tenant, p.cfg.Site, d.Name, "mx/"+s.Check, slot)
	return meshmon.Message{Stream: meshmon.StreamMetrics, Site: p.cfg.Site, Device: d.Name, Kind: s.Check, Time: s.Time, ID: id, Data: b}, nil
}
