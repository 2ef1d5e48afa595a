package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// ReadNeighbors returns the latest lldp sample of every device of site in
// the METRICS stream (at a site peer, or at central, which holds every
// site's samples under their own subjects), as each device's neighbour
// table, sorted by device. A sample that does not decode is skipped. It
// fails when the stream cannot be read.
//
// It replays the last message of each device's lldp subject through one
// consumer (Tail's LastPerSubject), of the user's own names where its
// credential says so: a request a device, as before, took more than a
// minute at 100,000 devices.
func ReadNeighbors(ctx context.Context, js jetstream.JetStream, site string) ([]meshmon.DeviceNeighbors, error) {
	if err := meshmon.ValidateName("site", site); err != nil {
		return nil, err
	}
	last := map[string]meshmon.DeviceNeighbors{}
	opts := TailOptions{Stream: MetricsStream, Subject: "mx." + site + ".*." + meshmon.CheckLLDP, LastPerSubject: true}
	err := Tail(ctx, js, opts, func(m TailMsg) error {
		var smp meshmon.Sample
		if json.Unmarshal(m.Data, &smp) != nil || smp.Device == "" {
			return nil
		}
		last[smp.Device] = meshmon.DeviceNeighbors{Device: smp.Device, Table: meshmon.NeighborTable{
			Local: meshmon.LocalIdentity{
				ChassisIDSubtype: smp.Labels[meshmon.LabelChassisIDSubtype],
				ChassisID:        smp.Labels[meshmon.LabelChassisID],
				SysName:          smp.Labels[meshmon.LabelSysName],
			},
			Neighbors: smp.Neighbors,
		}}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("topology: %w", err) // Tail returns nil when ctx ends
	}
	out := make([]meshmon.DeviceNeighbors, 0, len(last))
	for _, name := range slices.Sorted(maps.Keys(last)) {
		out = append(out, last[name])
	}
	return out, nil
}
