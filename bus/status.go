package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
)

// StatusReport is what `meshmon status --json` prints.
// A site peer reports devices and pollers; central reports sites and its
// peers.
type StatusReport struct {
	Peer    PeerStatus   `json:"peer"`
	Streams []StreamInfo `json:"streams"`
	Devices int          `json:"devices"`
	// DevicesHidden: the credential may not read the inventory (a NOC's:
	// the records hold SNMP secrets); Devices and the group's device
	// counts are then 0.
	DevicesHidden bool                 `json:"devices_hidden,omitempty"`
	Pollers       []meshmon.PollerInfo `json:"pollers"`
	Group         *GroupStatus         `json:"group,omitempty"`
	Sites         []SiteLink           `json:"sites,omitempty"`
	// Central is a site's link to central; absent at central and for a
	// NOC's credential, which may not read the source consumers.
	Central      *CentralLink  `json:"central,omitempty"`
	CentralPeers []CentralPeer `json:"central_peers,omitempty"`
	// StoreFull is the peer's refusal while its disk is full; the rest
	// but Peer is then unknown (pollers null), not zero.
	StoreFull string `json:"store_full,omitempty"`
}

// PeerStatus is the peer a StatusReport is of.
type PeerStatus struct {
	URL     string `json:"url"`
	Server  string `json:"server"`
	Version string `json:"version"`
	RTT     string `json:"rtt"`
	Domain  string `json:"domain"` // the site, or "hub" at central
	Role    string `json:"role"`   // site or central
}

// peerDiskFullCode is the JetStream API error code a site peer whose disk
// is full answers with (peer/disk.go).
const peerDiskFullCode = 10047

// ReadStatus reads what status shows from the peer nc is connected to.
// noc: the credential is a NOC's, which may not read the device records
// (they hold SNMP secrets), nor the consumers central sources a site
// through, nor ask the sites.
func ReadStatus(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, noc bool) (StatusReport, error) {
	rtt, _ := nc.RTT()
	rep := StatusReport{Peer: PeerStatus{
		URL: nc.ConnectedUrlRedacted(), Server: nc.ConnectedServerName(),
		Version: nc.ConnectedServerVersion(), RTT: rtt.Round(time.Microsecond).String(),
	}}
	ai, err := js.AccountInfo(ctx)
	if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == peerDiskFullCode {
		// A site peer whose disk is full answers for JetStream itself
		// (docs/operations.md): what lives in its store (devices, the
		// group, the pollers' heartbeats) cannot be read until it stores
		// again; say so rather than show figures.
		rep.Peer.Role, rep.StoreFull = "site", apiErr.Description
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("status: %w", err)
	}
	rep.Peer.Domain, rep.Peer.Role = ai.Domain, "site"
	if rep.Streams, err = StreamStatus(ctx, js); err != nil {
		return rep, err
	}
	if ai.Domain == HubDomain {
		rep.Peer.Role = "central"
		if rep.Sites, rep.CentralPeers, err = CentralStatus(ctx, js); err != nil {
			return rep, err
		}
		if !noc {
			AskSites(ctx, js, rep.Sites)
		}
		rep.Pollers = []meshmon.PollerInfo{}
		return rep, nil
	}
	return rep, readSiteStatus(ctx, js, noc, &rep)
}

// readSiteStatus reads a site peer's devices, pollers, group and link to
// central into rep.
func readSiteStatus(ctx context.Context, js jetstream.JetStream, noc bool, rep *StatusReport) error {
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		return err
	}
	var devs []meshmon.Device
	if rep.DevicesHidden = noc; !rep.DevicesHidden {
		if devs, err = inv.List(ctx); err != nil {
			return err
		}
	}
	rep.Devices = len(devs)
	reg, err := OpenRegistry(ctx, js)
	if err != nil {
		return err
	}
	if rep.Pollers, err = reg.List(ctx); err != nil {
		return err
	}
	group, err := ReadGroupStatus(ctx, js, rep.Pollers, devs, time.Now())
	if err != nil {
		return err
	}
	rep.Group = &group
	if !noc {
		link := SiteCentralLink(ctx, js, rep.Peer.Domain)
		rep.Central = &link
	}
	return nil
}

// WriteText writes the report for people: a site's or central's.
func (rep StatusReport) WriteText(w io.Writer) error {
	if rep.Peer.Role == "central" {
		return rep.writeCentral(w)
	}
	return rep.writeSite(w)
}

// writeSite writes a site peer's status for people.
func (rep StatusReport) writeSite(w io.Writer) error {
	if rep.StoreFull != "" {
		fmt.Fprintf(w, "site peer %s (nats-server %s) at %s, rtt %s\n", rep.Peer.Server, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
		fmt.Fprintf(w, "store: %s\n", rep.StoreFull)
		fmt.Fprintln(w, "devices, poller group, pollers, link to central: unknown until the peer stores again (its pollers spool meanwhile)")
		return nil
	}
	fmt.Fprintf(w, "site peer %s of site %s (nats-server %s) at %s, rtt %s\n", rep.Peer.Server, rep.Peer.Domain, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
	leader := rep.Group.Leader
	if leader == "" {
		leader = "(none)"
	}
	if rep.DevicesHidden {
		fmt.Fprintln(w, "devices: not readable with this credential")
		fmt.Fprintf(w, "poller group: leader %s, assignment revision %d\n\n", leader, rep.Group.Revision)
	} else {
		fmt.Fprintf(w, "devices: %d\n", rep.Devices)
		fmt.Fprintf(w, "poller group: leader %s, assignment revision %d, %d devices assigned, %d unassigned\n\n", leader, rep.Group.Revision, rep.Group.Assigned, rep.Group.Unassigned)
	}
	if rep.Central != nil {
		fmt.Fprintln(w, rep.Central.Line(time.Now()))
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	writeStreams(tw, rep.Streams, true)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "POLLER\tROLE\tASSIGNED\tPOLLING\tSPOOLED\tPUBLISHED\tDROPPED\tLAST HEARTBEAT")
	if len(rep.Pollers) == 0 {
		fmt.Fprintln(tw, "(none seen)")
	}
	for i, p := range rep.Pollers {
		m := rep.Group.Members[i]
		role := "member"
		switch {
		case m.Leader:
			role = "leader"
		case !m.InGroup:
			role = "out" // silent past the member timeout, or not assigned yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s ago\n", p.Name, role, m.Devices, p.Devices, p.Spooled, p.Published, p.Dropped, time.Since(p.LastSeen).Round(100*time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	WriteTrapDrops(w, rep.Pollers)
	return nil
}

// writeCentral writes central's status for people.
func (rep StatusReport) writeCentral(w io.Writer) error {
	fmt.Fprintf(w, "central peer %s (nats-server %s) at %s, rtt %s\n\n", rep.Peer.Server, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	writeStreams(tw, rep.Streams, false)
	if len(rep.CentralPeers) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "CENTRAL PEER (EVENTS REPLICA)\tROLE\tCURRENT\tLAG")
		for _, p := range rep.CentralPeers {
			role := "follower"
			if p.Leader {
				role = "leader"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\n", p.Name, role, p.Current, p.Lag)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return WriteSiteLinks(w, rep.Sites)
}

// WriteTrapDrops writes, for each poller that dropped packets at its trap
// port, how many and why.
func WriteTrapDrops(w io.Writer, pollers []meshmon.PollerInfo) {
	for _, p := range pollers {
		if len(p.TrapsInvalid) == 0 && p.TrapsDropped == 0 {
			continue
		}
		parts := make([]string, 0, len(p.TrapsInvalid)+1)
		for _, r := range slices.Sorted(maps.Keys(p.TrapsInvalid)) {
			parts = append(parts, fmt.Sprintf("%s %d", r, p.TrapsInvalid[r]))
		}
		if p.TrapsDropped > 0 {
			parts = append(parts, fmt.Sprintf("queue_full %d", p.TrapsDropped))
		}
		fmt.Fprintf(w, "traps dropped by %s: %s\n", p.Name, strings.Join(parts, ", "))
	}
}

// writeStreams writes the stream table; with rideOut, the longest WAN outage
// each stream can hold for central.
func writeStreams(tw *tabwriter.Writer, streams []StreamInfo, rideOut bool) {
	head := "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\tLAST\tLIMITS"
	if rideOut {
		head += "\tRIDES OUT A WAN CUT OF"
	}
	fmt.Fprintln(tw, head)
	for _, s := range streams {
		last := "-"
		if !s.LastTime.IsZero() {
			last = time.Since(s.LastTime).Round(time.Second).String() + " ago"
		}
		limits := meshmon.FormatAge(s.MaxAge) + ", " + meshmon.ShowSize(s.MaxBytes)
		switch {
		case s.MaxBytes < 0 && s.AccountDisk > 0:
			limits = meshmon.FormatAge(s.MaxAge) + ", the tenant's " + meshmon.ShowSize(s.AccountDisk)
		case s.MaxBytes < 0:
			limits = meshmon.FormatAge(s.MaxAge) + ", no size limit"
		}
		line := fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%s\t%s", s.Name, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, last, limits)
		if rideOut {
			line += "\t" + meshmon.FormatAge(s.RideOut.Round(time.Minute))
		}
		fmt.Fprintln(tw, line)
	}
}

// WriteSiteLinks writes central's table of its sites' links.
func WriteSiteLinks(w io.Writer, links []SiteLink) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tLINK\tLAST CONTACT\tLAG (MSGS)\tLAST EVENT STORED\tOBSERVED TO STORED\tERROR")
	if len(links) == 0 {
		fmt.Fprintln(tw, "(no sites; 'meshmon site add NAME' adds one)")
	}
	for _, l := range links {
		link, contact := "down", "never"
		if l.Up {
			link = "up"
		}
		if l.SinceContact >= 0 {
			contact = l.SinceContact.Round(time.Millisecond).String() + " ago"
		}
		stored, delay := "-", "-"
		if !l.LastStored.IsZero() {
			stored = time.Since(l.LastStored).Round(time.Second).String() + " ago"
			if !l.LastObserved.IsZero() {
				delay = l.LastStored.Sub(l.LastObserved).Round(time.Millisecond).String()
			}
		}
		lag := "unknown" // down, and the site does not answer
		if l.LagMessages != nil {
			lag = strconv.FormatUint(*l.LagMessages, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, link, contact, lag, stored, delay, l.Error)
	}
	return tw.Flush()
}

// Line is a site's link to central for people: its state, when central
// last acknowledged an event, and what central has not acknowledged yet.
func (l CentralLink) Line(now time.Time) string {
	line := "link to central: " + l.State + sinceText(l.Since, now)
	if l.LastAck.IsZero() {
		line += ", central has acknowledged no event yet"
	} else {
		line += ", central last acknowledged an event " + now.Sub(l.LastAck).Round(time.Second).String() + " ago"
	}
	count := func(n *uint64) string {
		if n == nil {
			return "unknown"
		}
		return strconv.FormatUint(*n, 10)
	}
	line += fmt.Sprintf("; not yet at central: %s events, %s samples", count(l.Events), count(l.Samples))
	if len(l.Peers) > 1 {
		// A site cluster: each member's own link.
		var each []string
		for _, p := range l.Peers {
			each = append(each, p.Peer+" "+p.State+sinceText(p.Since, now))
		}
		line += "; members' links: " + strings.Join(each, ", ")
	}
	return line
}

// sinceText is " since <time> (<how long> ago)" for people, or nothing for
// the zero time.
func sinceText(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " since " + t.UTC().Format(time.DateTime) + " UTC (" + now.Sub(t).Round(time.Second).String() + " ago)"
}
