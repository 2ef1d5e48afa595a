package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
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
type statusReport struct {
	Peer    peerStatus           `json:"peer"`
	Streams []bus.StreamInfo     `json:"streams"`
	Devices int                  `json:"devices"`
	Pollers []meshmon.PollerInfo `json:"pollers"`
}

type peerStatus struct {
	URL     string `json:"url"`
	Server  string `json:"server"`
	Version string `json:"version"`
	RTT     string `json:"rtt"`
}

func status(c *cli.Context) error {
	cl, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := opCtx(c)
	defer cancel()

	rtt, _ := cl.nc.RTT()
	rep := statusReport{Peer: peerStatus{
		URL: cl.nc.ConnectedUrlRedacted(), Server: cl.nc.ConnectedServerName(),
		Version: cl.nc.ConnectedServerVersion(), RTT: rtt.Round(time.Microsecond).String(),
	}}
	if rep.Streams, err = bus.StreamStatus(ctx, cl.js); err != nil {
		return err
	}
	inv, err := bus.OpenInventory(ctx, cl.js)
	if err != nil {
		return err
	}
	devs, err := inv.List(ctx)
	if err != nil {
		return err
	}
	rep.Devices = len(devs)
	reg, err := bus.OpenRegistry(ctx, cl.js)
	if err != nil {
		return err
	}
	if rep.Pollers, err = reg.List(ctx); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(os.Stdout, rep)
	}
	fmt.Printf("peer %s (nats-server %s) at %s, rtt %s\n", rep.Peer.Server, rep.Peer.Version, rep.Peer.URL, rep.Peer.RTT)
	fmt.Printf("devices: %d\n\n", rep.Devices)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\tLAST")
	for _, s := range rep.Streams {
		last := "-"
		if !s.LastTime.IsZero() {
			last = time.Since(s.LastTime).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, last)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "POLLER\tSITE\tDEVICES\tSPOOLED\tPUBLISHED\tDROPPED\tLAST SEEN")
	if len(rep.Pollers) == 0 {
		fmt.Fprintln(tw, "(none seen)")
	}
	for _, p := range rep.Pollers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s ago\n", p.Name, p.Site, p.Devices, p.Spooled, p.Published, p.Dropped, time.Since(p.LastSeen).Round(time.Second))
	}
	return tw.Flush()
}
