package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:   "status",
		Usage:  "show the peer, its streams, devices and the pollers it has seen",
		Flags:  []cli.Flag{jsonFlag()},
		Action: status,
	}
}

// statusReport is what `meshmon status --json` prints.
// A site peer reports devices and pollers; central reports sites and its
// peers.
type statusReport struct {
	Peer    peerStatus       `json:"peer"`
	Streams []bus.StreamInfo `json:"streams"`
	Devices int              `json:"devices"`
	// DevicesHidden: the credential may not read the inventory (a NOC's:
	// the records hold SNMP secrets); Devices and the group's device
	// counts are then 0.
	DevicesHidden bool                 `json:"devices_hidden,omitempty"`
	Pollers       []meshmon.PollerInfo `json:"pollers"`
	Group         *bus.GroupStatus     `json:"group,omitempty"`
	Sites         []bus.SiteLink       `json:"sites,omitempty"`
	// Central is a site's link to central; absent at central and for a
	// NOC's credential, which may not read the source consumers.
	Central      *bus.CentralLink  `json:"central,omitempty"`
	CentralPeers []bus.CentralPeer `json:"central_peers,omitempty"`
	// StoreFull is the peer's refusal while its disk is full; the rest
	// but Peer is then unknown (pollers null), not zero.
	StoreFull string `json:"store_full,omitempty"`
}

// peerDiskFullCode is the JetStream API error code a site peer whose disk
// is full answers with (peer/disk.go).
const peerDiskFullCode = 10047

type peerStatus struct {
	URL     string `json:"url"`
	Server  string `json:"server"`
	Version string `json:"version"`
	RTT     string `json:"rtt"`
	Domain  string `json:"domain"` // the site, or "hub" at central
	Role    string `json:"role"`   // site or central
}

func status(c *cli.Context) error {
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := opCtx(c)
	defer cancel()

	// Each read is tried again while a leader moves or a peer restarts
	// (a JetStream request then goes unanswered, or has no responders),
	// until --timeout.
	var rep statusReport
	if err := bus.Retry(ctx, func(ctx context.Context) (err error) {
		rep, err = readStatus(ctx, c, cl)
		return err
	}); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(os.Stdout, rep)
	}
	if rep.Peer.Role == "central" {
		return printCentralStatus(rep)
	}
	return printSiteStatus(rep)
}

// readStatus reads what status shows from the peer cl is connected to.
func readStatus(ctx context.Context, c *cli.Context, cl *client) (statusReport, error) {
	rtt, _ := cl.nc.RTT()
	rep := statusReport{Peer: peerStatus{
		URL: cl.nc.ConnectedUrlRedacted(), Server: cl.nc.ConnectedServerName(),
		Version: cl.nc.ConnectedServerVersion(), RTT: rtt.Round(time.Microsecond).String(),
	}}
	ai, err := cl.js.AccountInfo(ctx)
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
	if rep.Streams, err = bus.StreamStatus(ctx, cl.js); err != nil {
		return rep, err
	}
	if ai.Domain == bus.HubDomain {
		rep.Peer.Role = "central"
		if rep.Sites, rep.CentralPeers, err = bus.CentralStatus(ctx, cl.js); err != nil {
			return rep, err
		}
		if credsRole(c) != tenancy.RoleNOC {
			bus.AskSites(ctx, cl.js, rep.Sites)
		}
		rep.Pollers = []meshmon.PollerInfo{}
		return rep, nil
	}
	inv, err := bus.OpenInventory(ctx, cl.js)
	if err != nil {
		return rep, err
	}
	// A NOC may not read the device records (they hold SNMP secrets), nor
	// the consumers central sources the site through.
	noc := credsRole(c) == tenancy.RoleNOC
	var devs []meshmon.Device
	if rep.DevicesHidden = noc; !rep.DevicesHidden {
		if devs, err = inv.List(ctx); err != nil {
			return rep, err
		}
	}
	rep.Devices = len(devs)
	reg, err := bus.OpenRegistry(ctx, cl.js)
	if err != nil {
		return rep, err
	}
	if rep.Pollers, err = reg.List(ctx); err != nil {
		return rep, err
	}
	group, err := bus.ReadGroupStatus(ctx, cl.js, rep.Pollers, devs, time.Now())
	if err != nil {
		return rep, err
	}
	rep.Group = &group
	if !noc {
		link := bus.SiteCentralLink(ctx, cl.js, rep.Peer.Domain)
		rep.Central = &link
	}
	return rep, nil
}

// printSiteStatus prints a site peer's status for people.
func printSiteStatus(rep statusReport) error {
	if rep.StoreFull != "" {
		fmt.Printf("site peer %s (nats-server %s) at %s, rtt %s\n", rep.Peer.Server, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
		fmt.Printf("store: %s\n", rep.StoreFull)
		fmt.Println("devices, poller group, pollers, link to central: unknown until the peer stores again (its pollers spool meanwhile)")
		return nil
	}
	fmt.Printf("site peer %s of site %s (nats-server %s) at %s, rtt %s\n", rep.Peer.Server, rep.Peer.Domain, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
	leader := rep.Group.Leader
	if leader == "" {
		leader = "(none)"
	}
	if rep.DevicesHidden {
		fmt.Println("devices: not readable with this credential")
		fmt.Printf("poller group: leader %s, assignment revision %d\n\n", leader, rep.Group.Revision)
	} else {
		fmt.Printf("devices: %d\n", rep.Devices)
		fmt.Printf("poller group: leader %s, assignment revision %d, %d devices assigned, %d unassigned\n\n", leader, rep.Group.Revision, rep.Group.Assigned, rep.Group.Unassigned)
	}
	if rep.Central != nil {
		fmt.Println(centralLinkLine(*rep.Central, time.Now()))
		fmt.Println()
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	printStreams(tw, rep.Streams, true)
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
	printTrapDrops(os.Stdout, rep.Pollers)
	return nil
}

// printTrapDrops writes, for each poller that dropped packets at its trap
// port, how many and why.
func printTrapDrops(w io.Writer, pollers []meshmon.PollerInfo) {
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

// printStreams writes the stream table; with rideOut, the longest WAN outage
// each stream can hold for central.
func printStreams(tw *tabwriter.Writer, streams []bus.StreamInfo, rideOut bool) {
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

func printCentralStatus(rep statusReport) error {
	fmt.Printf("central peer %s (nats-server %s) at %s, rtt %s\n\n", rep.Peer.Server, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	printStreams(tw, rep.Streams, false)
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
	fmt.Println()
	return printSiteLinks(rep.Sites)
}

// credsRole is the role of the tenant user whose --creds the command runs
// with; empty without meshmon tenant credentials.
func credsRole(c *cli.Context) tenancy.Role {
	f := c.String("creds")
	if f == "" {
		return ""
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return ""
	}
	id, err := tenancy.CredsIdentity(b)
	if err != nil {
		return ""
	}
	return id.Role
}

// centralLinkLine is a site's link to central for people: its state, when
// central last acknowledged an event, and what central has not
// acknowledged yet.
func centralLinkLine(l bus.CentralLink, now time.Time) string {
	line := "link to central: " + l.State + since(l.Since, now)
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
			each = append(each, p.Peer+" "+p.State+since(p.Since, now))
		}
		line += "; members' links: " + strings.Join(each, ", ")
	}
	return line
}

// since is " since <time> (<how long> ago)" for people, or nothing for the
// zero time.
func since(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " since " + t.UTC().Format(time.DateTime) + " UTC (" + now.Sub(t).Round(time.Second).String() + " ago)"
}
