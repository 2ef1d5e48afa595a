// Package bench measures meshmon on this machine: the 'meshmon bench'
// commands. Each bench takes a Config (the command's flags), runs real
// peers, pollers and simulated devices, and prints a table, or JSON with
// Output.JSON. The figures are this machine's, from this run.
package bench

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/meshmon/meshmon/poller"
)

// Output is where a bench prints: its result on Stdout (a table, or JSON
// with JSON set) and its progress on Stderr, or on Stderr alone with JSON.
type Output struct {
	JSON   bool
	Stdout io.Writer // nil: os.Stdout
	Stderr io.Writer // nil: os.Stderr
}

func (o Output) stdout() io.Writer {
	if o.Stdout == nil {
		return os.Stdout
	}
	return o.Stdout
}

func (o Output) stderr() io.Writer {
	if o.Stderr == nil {
		return os.Stderr
	}
	return o.Stderr
}

// PublishConfig is 'meshmon bench publish'.
type PublishConfig struct {
	Output
	Messages, Size int  // messages per run, and their size in bytes
	Batch          int  // the poller's publish batch
	PerCommit      int  // messages per spool commit (one poll's worth)
	Workers        int  // goroutines committing to the spool at once
	SyncAlways     bool // the peer fsyncs every write
}

// PollConfig is 'meshmon bench poll'.
type PollConfig struct {
	Output
	Devices    int           // simulated devices
	Interval   time.Duration // poll interval
	Measure    time.Duration // measurement window, after one interval of warm-up
	Workers    int           // poller workers
	Interfaces int           // interfaces per simulated device
	Version    string        // the poller's, in its heartbeats
	// NoTopology turns the poller's LLDP/CDP neighbour reads off
	// (TopologyInterval 0): each device's first poll does not walk its
	// neighbour tables, which a run that never gets past the first cycle
	// otherwise measures.
	NoTopology bool
	// CPUProfile and HeapProfile, when set, are files for a CPU profile
	// of the measurement window and a heap profile at its end (this
	// process: the poller alone).
	CPUProfile, HeapProfile string
	// Meshmon is the meshmon executable whose 'peer run' and 'sim' run as
	// child processes; empty: this process's executable.
	Meshmon string
}

// TrapsConfig is 'meshmon bench traps'.
type TrapsConfig struct {
	Output
	Rates         []int         // traps per second to send, one step each
	Step          time.Duration // how long each step sends
	Queue         int           // the poller's trap queue
	MalformedRate int           // invalid packets per second sent between the traps
	Version       string
}

// MeshConfig is 'meshmon bench mesh'.
type MeshConfig struct {
	Output
	Sites      int           // site peers
	Events     int           // events per site for the ingest run, and piled up per site during a WAN cut
	Rate       int           // events per second, all sites together, for the latency run
	Cuts       int           // WAN cuts of every site
	CutFor     time.Duration // length of each WAN cut
	CutMode    string        // "silent" (the links drop packets) or "loud" (closed at once)
	LatencyFor time.Duration // length of the latency run
	// WANDelay is the latency, each way, added to every site's link by the
	// WAN proxies: a WAN's round trip is twice it. 0: loopback's alone.
	WANDelay time.Duration
	PeerLog  *slog.Logger // the peers' log; nil: they log nothing
	// SiteProcesses runs each site peer in a process of its own ('meshmon
	// peer run', Meshmon's), on a leaf link through the same WAN proxies,
	// instead of in this process beside central.
	SiteProcesses bool
	// DrainBatch is the latency run's poller publish batch (the poller's
	// BatchSize).
	DrainBatch int
	// Meshmon is the meshmon executable of the site processes; empty:
	// this process's executable.
	Meshmon string
	// CPUProfile, when set, is a prefix: the ingest run's CPU profile of
	// this process goes to CPUProfile+"-ingest.pprof" and that of the
	// nats bench anchor (the central servers' side) to
	// CPUProfile+"-natsbench.pprof".
	CPUProfile string
	// CentralNoSync runs central's peers without SyncAlways (the sites
	// keep it), to measure what fsyncing every write costs there.
	CentralNoSync bool
	// Publishers is how many publishers each site's events go through
	// in the ingest run and the cuts, each with one atomic batch in
	// flight; more than one lets the sites store faster than one batch
	// at a time allows.
	Publishers int
	// LatencyTrace, when set, is a file the latency run writes every
	// event's times to, one CSV row each (writeTrace), so that its tail
	// can be placed in time: a stall of every event at once, or a few
	// slow ones spread over the run.
	LatencyTrace string
}

// FailoverConfig is 'meshmon bench failover': a poller group of real
// processes at each size in turn, its members killed one at a time.
type FailoverConfig struct {
	Output
	Sizes   []FailoverSize // one site each, in turn
	Pollers int            // members of each site's group
	Kills   int            // kills of each size, each followed by the victim's return
	Signal  string         // "kill" (SIGKILL), "term" (SIGTERM) or "stop" (SIGSTOP, then SIGCONT)
	Victim  string         // "leader" or "member"
	// Sims is the simulator processes of each size; 0: one per 15,000
	// devices (a simulator holds a socket a device, and the open-files
	// hard limit is often 20,000).
	Sims int
	// Workers, Heartbeat and MemberTimeout are the pollers' flags of
	// those names; 0: their default.
	Workers                  int
	Heartbeat, MemberTimeout time.Duration
	PollerArgs               []string // more flags for the pollers
	// Soak, when set, kills nothing: it watches each size's group of live
	// members this long and counts the devices moved from a live poller.
	Soak time.Duration
	Keep bool // keep the directory of the processes' data and logs
	// Meshmon is the meshmon executable of the peer, the simulators and
	// the pollers; empty: this process's executable.
	Meshmon string
}

// FailoverSize is one site of 'meshmon bench failover'.
type FailoverSize struct {
	Devices  int
	Interval time.Duration // the devices' poll interval
}

// TenantsConfig is 'meshmon bench tenants'.
type TenantsConfig struct {
	Output
	Tenants, Msgs, Size int
	Disk                int64 // each tenant's disk limit
	NeighbourRate       int   // messages a second the tenant over its disk limit publishes
	// Settle is how long the bench waits after the last create before it
	// measures again (see Tenants).
	Settle time.Duration
}

// pollerService is a poller service of cfg keeping its store in
// dir/poller.
func pollerService(cfg poller.Config, dir string) poller.ServiceConfig {
	return poller.ServiceConfig{Config: cfg, DataDir: filepath.Join(dir, "poller"), PeerWait: 10 * time.Second}
}

func errorLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError}))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
