package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"text/tabwriter"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/pollerlink"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/poller"
)

// trapStep is one rate of `meshmon bench traps`.
type trapStep struct {
	Target       int     `json:"target_per_sec"`
	Sent         int     `json:"sent"`
	SentPerSec   float64 `json:"sent_per_sec"`
	Received     uint64  `json:"received"`       // read from the socket by the listener
	SocketLost   int     `json:"socket_lost"`    // sent but never read: the kernel's receive buffer overflowed
	QueueLost    uint64  `json:"queue_lost"`     // read but dropped: the trap queue was full
	Stored       uint64  `json:"stored"`         // events in the peer's EVENTS stream
	StoredPerSec float64 `json:"stored_per_sec"` // stored / send time
	Lost         int     `json:"lost"`           // sent - stored
	// Invalid packets sent between the traps (--malformed-rate) and how
	// many of them the listener counted as invalid.
	MalformedSent    int    `json:"malformed_sent,omitempty"`
	MalformedCounted uint64 `json:"malformed_counted,omitempty"`
}

// Traps measures trap intake: v2c traps sent at each rate in turn, and
// how many became stored events.
func Traps(ctx context.Context, bc TrapsConfig) error {
	rates, step := bc.Rates, bc.Step
	for _, r := range rates {
		if r < 1 || r > 1_000_000 {
			return fmt.Errorf("--rates: %d is out of range; use 1 to 1000000 traps per second", r)
		}
	}
	mrate := bc.MalformedRate
	if mrate < 0 || mrate > 1_000_000 {
		return fmt.Errorf("--malformed-rate: %d is out of range; use 0 to 1000000 packets per second", mrate)
	}
	if step < 100*time.Millisecond {
		return fmt.Errorf("--step %s is too short; use at least 100ms", step)
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-traps-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pe, err := meshtest.Site(ctx, dir, "bench", "bench", true)
	if err != nil {
		return err
	}
	defer pe.Close()
	ccfg := bus.ConnConfig{URL: pe.ClientURL(), Name: "bench"}
	nc, err := bus.ConnectWait(ctx, ccfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	events, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return err
	}

	cfg := poller.DefaultConfig()
	cfg.Name, cfg.Site, cfg.Version = "bench", "bench", bc.Version
	cfg.TrapListen, cfg.TrapQueue = "127.0.0.1:0", bc.Queue
	log := errorLogger(bc.stderr())
	po, stop, err := pollerlink.StartReady(ctx, pollerService(cfg, dir), ccfg, log)
	if err != nil {
		return err
	}
	defer stop()
	conn, err := net.DialUDP("udp", nil, po.TrapAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer conn.Close()

	if !bc.JSON {
		fmt.Fprintf(bc.stdout(), "one poller, trap listener on %s, spool fsynced, peer fsyncs every write; %s per step\n", po.TrapAddr(), step)
	}
	var steps []trapStep
	seq := 0
	for _, rate := range rates {
		n := max(int(float64(rate)*step.Seconds()), 1)
		pkts, err := trapPackets(seq, n)
		if err != nil {
			return err
		}
		seq += n
		m := int(float64(mrate) * step.Seconds())
		pkts = withJunk(pkts, m, int64(seq))
		s0 := po.Stats()
		info, err := events.Info(ctx)
		if err != nil {
			return err
		}
		stored0 := info.State.Msgs

		sendTime := sendPaced(conn, pkts, rate+mrate)

		st := trapStep{Target: rate, Sent: n, SentPerSec: float64(n) / sendTime.Seconds(), MalformedSent: m}
		if st, err = settleStep(ctx, po, events, s0, stored0, st); err != nil {
			return err
		}
		st.SocketLost = n - int(st.Received)
		st.Lost = n - int(st.Stored)
		st.StoredPerSec = float64(st.Stored) / sendTime.Seconds()
		steps = append(steps, st)
	}
	if bc.JSON {
		return printJSON(bc.stdout(), steps)
	}
	return printTrapSteps(bc.stdout(), steps, mrate)
}

// trapPackets encodes n distinct v2c linkDown traps, numbered from first.
func trapPackets(first, n int) ([][]byte, error) {
	pkts := make([][]byte, n)
	for i := range n {
		id := first + i
		pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap, RequestID: uint32(id),
			Variables: []gosnmp.SnmpPDU{
				{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(id + 1)},
				{Name: ".1.3.6.1.6.3.1.1.4.1.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.6.3.1.1.5.3"},
				{Name: ".1.3.6.1.2.1.2.2.1.1.1", Type: gosnmp.Integer, Value: 1},
			}}
		b, err := pkt.MarshalMsg()
		if err != nil {
			return nil, fmt.Errorf("encode trap: %w", err)
		}
		pkts[i] = b
	}
	return pkts, nil
}

// withJunk spreads m invalid packets evenly between the traps: random
// bytes and traps cut short, in turn.
func withJunk(traps [][]byte, m int, seed int64) [][]byte {
	if m == 0 {
		return traps
	}
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	out := make([][]byte, 0, len(traps)+m)
	for i, j := 0, 0; i < len(traps) || j < m; {
		// Keep the share of junk sent so far at m/(len+m).
		if j < m && (i >= len(traps) || j*(len(traps)+m) <= (i+j)*m) {
			var b []byte
			if t := traps[j%len(traps)]; j%2 == 0 && len(t) > 1 {
				b = t[:1+r.IntN(len(t)-1)]
			} else {
				b = make([]byte, 1+r.IntN(200))
				for k := range b {
					b[k] = byte(r.Uint32())
				}
			}
			out = append(out, b)
			j++
			continue
		}
		out = append(out, traps[i])
		i++
	}
	return out
}

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, c := range m {
		n += c
	}
	return n
}

// sendPaced sends pkts at rate per second, in bursts of a millisecond's
// worth, and returns how long it took.
func sendPaced(conn *net.UDPConn, pkts [][]byte, rate int) time.Duration {
	start := time.Now()
	for i, p := range pkts {
		due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
		if d := time.Until(due); d > time.Millisecond {
			time.Sleep(d)
		}
		_, _ = conn.Write(p)
	}
	return max(time.Since(start), time.Duration(float64(len(pkts))/float64(rate)*float64(time.Second)))
}

// printTrapSteps prints the steps as a table, and the highest rate with no
// trap lost.
func printTrapSteps(w io.Writer, steps []trapStep, mrate int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head, row := "TARGET/S\tSENT/S\tSENT\tRECEIVED\tSOCKET LOST\tQUEUE LOST\tSTORED\tSTORED/S\tLOST\t", "%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%.0f\t%d\t"
	if mrate > 0 {
		head += "MALFORMED SENT\tCOUNTED\t"
	}
	fmt.Fprintln(tw, head)
	best := 0.0
	for _, s := range steps {
		fmt.Fprintf(tw, row, s.Target, s.SentPerSec, s.Sent, s.Received, s.SocketLost, s.QueueLost, s.Stored, s.StoredPerSec, s.Lost)
		if mrate > 0 {
			fmt.Fprintf(tw, "%d\t%d\t", s.MalformedSent, s.MalformedCounted)
		}
		fmt.Fprintln(tw)
		if s.Lost == 0 && s.StoredPerSec > best {
			best = s.StoredPerSec
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhighest rate with no trap lost: %.0f traps/s stored as events\n", best)
	return nil
}

// settleStep waits up to 30 s for a step to settle: every received trap is
// committed or dropped, the spool is drained, and the stream stops
// growing. It fills in st what the poller (from s0) and the stream (from
// stored0) counted.
func settleStep(ctx context.Context, po *poller.Poller, events jetstream.Stream, s0 poller.Stats, stored0 uint64, st trapStep) (trapStep, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s1 := po.Stats()
		info, err := events.Info(ctx)
		if err != nil {
			return st, err
		}
		st.Received, st.QueueLost = s1.TrapsIn-s0.TrapsIn, s1.TrapsDropped-s0.TrapsDropped
		st.Stored, st.MalformedCounted = info.State.Msgs-stored0, sumCounts(s1.TrapsInvalid)-sumCounts(s0.TrapsInvalid)
		settled := s1.TrapsCommitted-s0.TrapsCommitted+st.QueueLost == st.Received && s1.Spooled == 0 && st.Stored == s1.TrapsCommitted-s0.TrapsCommitted
		if settled || time.Now().After(deadline) {
			return st, nil
		}
		if err := waitCtx(ctx, 50*time.Millisecond); err != nil {
			return st, err
		}
	}
}
