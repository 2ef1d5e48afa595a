package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// ReadNeighbors returns the latest lldp sample of every device of site in
// the METRICS stream (at a site peer, or at central, which holds every
// site's samples under their own subjects), as each device's neighbour
// table, sorted by device. A sample that does not decode is skipped. It
// fails when the stream cannot be read.
func ReadNeighbors(ctx context.Context, js jetstream.JetStream, site string) ([]meshmon.DeviceNeighbors, error) {
	if err := meshmon.ValidateName("site", site); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, MetricsStream)
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", MetricsStream, err)
	}
	filter := "mx." + site + ".*." + meshmon.CheckLLDP
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", MetricsStream, err)
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		subjects = append(subjects, subj)
	}
	slices.Sort(subjects)
	var out []meshmon.DeviceNeighbors
	for _, subj := range subjects {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // gone to the stream's limits since the info
		}
		if err != nil {
			return nil, fmt.Errorf("topology: last message on %s: %w", subj, err)
		}
		var smp meshmon.Sample
		if json.Unmarshal(m.Data, &smp) != nil || smp.Device == "" {
			continue
		}
		out = append(out, meshmon.DeviceNeighbors{Device: smp.Device, Table: meshmon.NeighborTable{
			Local: meshmon.LocalIdentity{
				ChassisIDSubtype: smp.Labels[meshmon.LabelChassisIDSubtype],
				ChassisID:        smp.Labels[meshmon.LabelChassisID],
				SysName:          smp.Labels[meshmon.LabelSysName],
			},
			Neighbors: smp.Neighbors,
		}})
	}
	return out, nil
}
