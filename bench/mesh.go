package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/internal/proccpu"
	"github.com/meshmon/meshmon/peer"
)

// meshBenchResult is what `meshmon bench mesh` measured.
type meshBenchResult struct {
	Sites             int     `json:"sites"`
	IngestEvents      int     `json:"ingest_events"`
	SiteProcesses     bool    `json:"site_processes"`
	SitesStoredPerSec float64 `json:"sites_stored_per_sec"`
	IngestPerSec      float64 `json:"central_ingest_per_sec"`
	CatchUpEvents     int     `json:"catch_up_events"`
	CatchUpPerSec     float64 `json:"catch_up_per_sec"`
	Cuts              int     `json:"cuts"`
	CutFor            string  `json:"cut_for"`
	CutMode           string  `json:"cut_mode"`
	WANDelay          string  `json:"wan_delay"`
	CatchUpStartP50   string  `json:"catch_up_started_after_p50"`
	CatchUpStartMax   string  `json:"catch_up_started_after_max"`
	LatencyRate       int     `json:"latency_rate_per_sec"`
	DrainBatch        int     `json:"latency_drain_batch"`
	LatencyEvents     int     `json:"latency_events"`
	LatencyP50        string  `json:"latency_p50"`
	LatencyP99        string  `json:"latency_p99"`
	LatencyMax        string  `json:"latency_max"`
	LatencyHops       []hop   `json:"latency_hops"`
	LatencyDrain      string  `json:"latency_drain"`
	// LatencySettledAfter is how long the sites' source consumers took to
	// settle after the last catch-up, before the latency run (settleSources).
	LatencySettledAfter string  `json:"latency_settled_after"`
	NatsBenchPerSec     float64 `json:"nats_bench_js_pub_per_sec,omitempty"`
	IngestVsNatsBench   float64 `json:"ingest_vs_nats_bench,omitempty"`
	// CatchUpVsNatsBench is the catch-up's rate over the anchor's: central
	// sourcing from sites that only serve what they stored, where the
	// ingest run's sites store as they go and may bound it.
	CatchUpVsNatsBench float64 `json:"catch_up_vs_nats_bench,omitempty"`
	NatsBenchSkipped   string  `json:"nats_bench_skipped,omitempty"`
	// NatsBenchEventsPerSec is nats bench's rate on a stream made like
	// EVENTS (natsAnchorLikeEvents), and CatchUpVsNatsBenchEvents the
	// catch-up's over it.
	NatsBenchEventsPerSec    float64 `json:"nats_bench_like_events_per_sec,omitempty"`
	CatchUpVsNatsBenchEvents float64 `json:"catch_up_vs_nats_bench_like_events,omitempty"`
	// CatchUpVsCutAnchor and CatchUpVsCutAnchorEvents are the medians,
	// over the cuts, of each catch-up's rate over the two anchors run in
	// its own cut (cutAnchors).
	CatchUpVsCutAnchor       float64 `json:"catch_up_vs_nats_bench_in_cut,omitempty"`
	CatchUpVsCutAnchorEvents float64 `json:"catch_up_vs_nats_bench_like_events_in_cut,omitempty"`
	NatsBenchEventsCores     float64 `json:"nats_bench_like_events_cores,omitempty"`
	NatsBenchEventsCLICores  float64 `json:"nats_bench_like_events_cli_cores,omitempty"`
	// IngestCores and NatsBenchCores are the CPU this process used over
	// each run, in cores (CPU time over wall time); NatsBenchCLICores is
	// the nats CLI's own.
	IngestCores  float64 `json:"ingest_cores"`
	LatencyCores float64 `json:"latency_cores"`
	// LatencyGCs is how many garbage collections this process made over
	// the latency run, and LatencyLiveHeapMiB the heap the last found
	// live: with every peer in this process, its collections' marking
	// sets the tail (docs/performance.md).
	LatencyGCs         uint64  `json:"latency_gcs"`
	LatencyLiveHeapMiB float64 `json:"latency_live_heap_mib"`
	// CatchUpCores is the CPU this process used over each catch-up, from
	// the links' return to the last event at central (median of the cuts).
	CatchUpCores float64 `json:"catch_up_cores"`
	// CatchUpStallMax is the longest a site's source consumer sat at its
	// MaxAckPending, delivering nothing, in any catch-up (sourceStats).
	CatchUpStallMax   time.Duration `json:"catch_up_stall_max_ns"`
	NatsBenchCores    float64       `json:"nats_bench_cores,omitempty"`
	NatsBenchCLICores float64       `json:"nats_bench_cli_cores,omitempty"`
	// IngestSources and LatencySources are the sites' source consumers
	// as sampled over each run (sourceWatch).
	IngestSources  sourceStats `json:"ingest_sources"`
	LatencySources sourceStats `json:"latency_sources"`
}

// profilePath is the file of the CPU profile of run under prefix, or ""
// when there is no prefix.
func profilePath(prefix, run string) string {
	if prefix == "" {
		return ""
	}
	return prefix + "-" + run + ".pprof"
}

// Mesh measures central ingest from several sites, catch-up after WAN
// cuts and observation-to-central latency. It runs a central of three
// clustered peers and several sites in this process, each with its own
// data directory and real leaf links.
func Mesh(ctx context.Context, bc MeshConfig) error {
	nSites, perSite, rate := bc.Sites, bc.Events, bc.Rate
	if err := bc.validate(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-mesh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := bc.stdout()
	if bc.JSON {
		out = bc.stderr()
	}

	// Central: three clustered peers; sites, each a single peer that
	// dials central through a proxy per central peer that the catch-up
	// run cuts like a WAN outage.
	plog := bc.PeerLog
	mesh, err := meshtest.StartMesh(ctx, meshtest.MeshConfig{Dir: dir, Prefix: "bench-", Central: 3, Log: plog, WANDelay: bc.WANDelay,
		Configure: func(_ int, c *peer.Config) { c.SyncAlways = !bc.CentralNoSync }})
	if err != nil {
		return err
	}
	defer mesh.Close()
	cjs := mesh.CentralJS
	siteJS, closeSites, err := startSites(ctx, bc, dir, mesh)
	if err != nil {
		return err
	}
	defer closeSites()
	where := "all in this process"
	if bc.SiteProcesses {
		where = "central in this process, each site in a process of its own"
	}
	sync := "fsync every write"
	if bc.CentralNoSync {
		sync = "no fsync of each write: nats-server's sync interval"
	}
	fmt.Fprintf(out, "central: 3 clustered peers (R3, %s); %d sites, one peer each (fsync every write), on leaf links; %s\n", sync, nSites, where)

	res := meshBenchResult{Sites: nSites, SiteProcesses: bc.SiteProcesses, IngestEvents: nSites * perSite, CatchUpEvents: nSites * perSite, LatencyRate: rate, DrainBatch: bc.DrainBatch}
	total := 0

	// 1. Ingest: every site publishes as fast as it can; how fast does
	// central store it all?
	stopProfile, err := StartCPUProfile(profilePath(bc.CPUProfile, "ingest"))
	if err != nil {
		return err
	}
	t0, cpu0 := time.Now(), proccpu.Used()
	sw := watchSources(ctx, siteJS)
	if err := publishAll(ctx, siteJS, 0, perSite, bc.Publishers); err != nil {
		sw.stop()
		stopProfile()
		return err
	}
	res.SitesStoredPerSec = float64(nSites*perSite) / time.Since(t0).Seconds()
	total += nSites * perSite
	err = waitCentral(ctx, cjs, total, 5*time.Minute)
	res.IngestSources = sw.stop()
	stopProfile()
	if err != nil {
		return err
	}
	took := time.Since(t0)
	res.IngestPerSec = float64(nSites*perSite) / took.Seconds()
	res.IngestCores = (proccpu.Used() - cpu0).Seconds() / took.Seconds()
	fmt.Fprintf(out, "ingest: %d events from %d sites stored at the sites at %.0f events/s and at central at %.0f events/s; this process used %.2f cores\n",
		nSites*perSite, nSites, res.SitesStoredPerSec, res.IngestPerSec, res.IngestCores)
	fmt.Fprintf(out, "  ingest: %s\n", res.IngestSources)
	if err := res.natsAnchor(ctx, out, mesh, profilePath(bc.CPUProfile, "natsbench")); err != nil {
		return err
	}

	if err := res.catchUp(ctx, out, bc, mesh, siteJS, total); err != nil {
		return err
	}
	if err := res.latency(ctx, out, dir, mesh, siteJS, perSite*(1+bc.Cuts), bc.LatencyFor, bc.LatencyTrace); err != nil {
		return err
	}
	return res.print(bc)
}

// catchUp cuts every site's WAN link bc.Cuts times, central holding total
// events before the first, and times each catch-up.
func (res *meshBenchResult) catchUp(ctx context.Context, out io.Writer, bc MeshConfig, mesh *meshtest.Mesh, siteJS []jetstream.JetStream, total int) error {
	nSites, perSite, cjs, plog := bc.Sites, bc.Events, mesh.CentralJS, bc.PeerLog
	cutLinks := func(cut bool) { mesh.CutWAN(cut, bc.CutMode == "silent") }
	// 2. Catch-up: every site's WAN link is cut while the sites take
	// events, for cutFor (long enough for central's source consumers to
	// fail and back off); then it returns and central sources the backlog.
	// Each cut is timed on its own: when sourcing resumed after the links
	// returned, and how fast the backlog came in.
	var starts []time.Duration
	var rates, cores, cutRatios, cutRatiosEvents []float64
	for cut := range bc.Cuts {
		cutLinks(true)
		cutAt := time.Now()
		from := perSite * (1 + cut)
		if err := publishAll(ctx, siteJS, from, perSite, bc.Publishers); err != nil {
			return err
		}
		var anchor, anchorEvents float64
		if bc.CutFor >= cutAnchorsMin && res.NatsBenchSkipped == "" {
			var err error
			if anchor, anchorEvents, err = res.cutAnchors(ctx, out, mesh, cut+1); err != nil {
				return err
			}
		}
		if err := waitCtx(ctx, time.Until(cutAt.Add(bc.CutFor))); err != nil {
			return err
		}
		before, err := centralBySite(ctx, cjs)
		if err != nil {
			return err
		}
		total += nSites * perSite
		// The links listed now lived through the cut; the proxies close them.
		links := newLinkWatch(mesh.SiteLinks())
		stopProfile, err := StartCPUProfile(profilePath(bc.CPUProfile, fmt.Sprintf("catchup%d", cut+1)))
		if err != nil {
			return err
		}
		restored, cpu0 := time.Now(), proccpu.Used()
		sw := watchSources(ctx, siteJS)
		cutLinks(false)
		if plog != nil {
			plog.Info("bench: the WAN links are back", "cut", cut+1)
		}
		resumed, err := waitCatchUp(ctx, cjs, before, total, restored, func(at time.Duration) {
			if len(links.up) < nSites { // central's leaf lists are read only until every link is back
				links.look(mesh.SiteLinks(), at)
			}
		})
		stopProfile()
		sources := sw.stop()
		if err != nil {
			return fmt.Errorf("catch-up: %w after cut %d ended", err, cut+1)
		}
		took := time.Since(restored)
		cores = append(cores, (proccpu.Used()-cpu0).Seconds()/took.Seconds())
		first, earliest, each := resumedAt(resumed)
		_, _, linked := resumedAt(links.up)
		starts = append(starts, first)
		rates = append(rates, float64(nSites*perSite)/(took-earliest).Seconds())
		vsAnchor := ""
		if res.NatsBenchPerSec > 0 {
			vsAnchor = fmt.Sprintf(" (%.2f of nats bench", rates[cut]/res.NatsBenchPerSec)
			if res.NatsBenchEventsPerSec > 0 {
				vsAnchor += fmt.Sprintf(", %.2f of nats bench like EVENTS", rates[cut]/res.NatsBenchEventsPerSec)
			}
			if anchor > 0 && anchorEvents > 0 {
				vsAnchor += fmt.Sprintf("; %.2f and %.2f of the same two run in this cut", rates[cut]/anchor, rates[cut]/anchorEvents)
				cutRatios = append(cutRatios, rates[cut]/anchor)
				cutRatiosEvents = append(cutRatiosEvents, rates[cut]/anchorEvents)
			}
			vsAnchor += ")"
		}
		fmt.Fprintf(out, "catch-up %d: after a WAN cut of every site for %s, sourcing resumed for the first site %s and for every site %s after the links returned (%s; each site's link up again: %s); %d events caught up at %.0f events/s%s; this process used %.2f cores from the links' return\n",
			cut+1, restored.Sub(cutAt).Round(100*time.Millisecond), earliest.Round(time.Millisecond), first.Round(time.Millisecond), each, linked, nSites*perSite, rates[cut], vsAnchor, cores[cut])
		fmt.Fprintf(out, "  catch-up %d: %s\n", cut+1, sources)
		res.CatchUpStallMax = max(res.CatchUpStallMax, sources.LongestAtLimit)
	}
	slices.Sort(starts)
	res.Cuts, res.CutFor, res.CutMode, res.WANDelay = bc.Cuts, bc.CutFor.String(), bc.CutMode, bc.WANDelay.String()
	res.CatchUpStartP50 = starts[len(starts)/2].Round(time.Millisecond).String()
	res.CatchUpStartMax = starts[len(starts)-1].Round(time.Millisecond).String()
	res.CatchUpPerSec, res.CatchUpCores = median(rates), median(cores)
	if res.NatsBenchPerSec > 0 {
		res.CatchUpVsNatsBench = res.CatchUpPerSec / res.NatsBenchPerSec
	}
	if res.NatsBenchEventsPerSec > 0 {
		res.CatchUpVsNatsBenchEvents = res.CatchUpPerSec / res.NatsBenchEventsPerSec
	}
	res.CatchUpVsCutAnchor, res.CatchUpVsCutAnchorEvents = median(cutRatios), median(cutRatiosEvents)
	return nil
}

// cutAnchorsMin is the shortest cut that the anchors run in (cutAnchors):
// they take a few seconds, and would make a shorter cut longer.
const cutAnchorsMin = 20 * time.Second

// cutAnchors runs both of natsAnchor's anchors, for as many messages as a
// catch-up has events, during cut n, once the sites have stored their
// backlog: central has nothing of the sites to store then, and the
// catch-up that follows is compared with rates taken a few seconds
// before it on the same cluster, rather than with the anchors run after
// the ingest. It returns the two rates, 0 for one skipped.
func (res *meshBenchResult) cutAnchors(ctx context.Context, out io.Writer, mesh *meshtest.Mesh, n int) (plain, likeEvents float64, err error) {
	plain, _, why := natsBenchPlain(ctx, mesh, res.CatchUpEvents)
	if why != "" {
		fmt.Fprintf(out, "  catch-up %d: nats bench in the cut: skipped (%s)\n", n, why)
		return 0, 0, nil
	}
	likeEvents, _, _, why, err = natsBenchLikeEvents(ctx, mesh, res.CatchUpEvents)
	if err != nil {
		return 0, 0, err
	}
	if why != "" {
		fmt.Fprintf(out, "  catch-up %d: nats bench like EVENTS in the cut: skipped (%s)\n", n, why)
		return plain, 0, nil
	}
	fmt.Fprintf(out, "  catch-up %d: in the cut, with the sites' backlog stored, nats bench ran at %.0f msgs/s, and like EVENTS at %.0f msgs/s\n", n, plain, likeEvents)
	return plain, likeEvents, nil
}

// median is the middle of v (the upper of the two middles), or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// benchEvent is one event of a site, numbered n, observed now.
func benchEvent(site string, n int, now time.Time) meshmon.Message {
	dev := "dev" + strconv.Itoa(n%100)
	id := fmt.Sprintf("%s-%d", site, n)
	ev := meshmon.Event{SpecVersion: "1.0", ID: id, Source: "/meshmon/default/" + site + "/bench", Type: "meshmon.trap", Time: now,
		Subject: dev, DataContentType: "application/json",
		Data: meshmon.EventData{Tenant: "default", Site: site, Device: dev, Kind: meshmon.KindTrap, Check: "trap", Severity: meshmon.SeverityInfo,
			Message: "bench event " + strconv.Itoa(n)}}
	b, _ := json.Marshal(ev)
	return meshmon.Message{Stream: meshmon.StreamEvents, Site: site, Device: dev, Kind: meshmon.KindTrap, Time: now, ID: id, Data: b}
}

// publishAll publishes n events at every site at once, numbered from
// first, through publishers batch publishers a site, each with its own
// share of the numbers and one atomic batch of 100 in flight.
func publishAll(ctx context.Context, sites []jetstream.JetStream, first, n, publishers int) error {
	publishers = max(publishers, 1)
	var wg sync.WaitGroup
	errs := make([]error, len(sites)*publishers)
	for i, js := range sites {
		site := fmt.Sprintf("s%d", i+1)
		for p := range publishers {
			lo, hi := first+n*p/publishers, first+n*(p+1)/publishers
			wg.Go(func() {
				pub := bus.NewPublisher(js)
				for k := lo; k < hi; k += 100 {
					msgs := make([]meshmon.Message, 0, 100)
					for j := k; j < min(k+100, hi); j++ {
						msgs = append(msgs, benchEvent(site, j, time.Now()))
					}
					if got, err := pub.PublishBatch(ctx, msgs); err != nil || got != len(msgs) {
						errs[i*publishers+p] = fmt.Errorf("publish at %s: %d of %d, %v", site, got, len(msgs), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func centralEvents(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, err
	}
	return int(s.CachedInfo().State.Msgs), nil
}

// centralBySite is how many events central holds of each site.
func centralBySite(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("ev.>"))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for subj, n := range info.State.Subjects {
		site, _, _ := strings.Cut(strings.TrimPrefix(subj, "ev."), ".")
		out[site] += int(n)
	}
	return out, nil
}

func waitCentral(ctx context.Context, js jetstream.JetStream, want int, within time.Duration) error {
	for deadline := time.Now().Add(within); ; {
		n, err := centralEvents(ctx, js)
		if err == nil && n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("central holds %d of %d events after %s", n, want, within)
		}
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

var natsBenchRate = regexp.MustCompile(`(?:Pub stats|publisher stats): ([\d,]+) msgs/sec`)

// natsBench runs the stock nats CLI's JetStream publish benchmark against
// url: msgs messages on subject into stream, with the CLI's args after.
// It returns msgs/s and the CPU time the CLI used, or why it did not run.
func natsBench(ctx context.Context, url string, msgs int, subject, stream string, args ...string) (float64, time.Duration, string) {
	bin, err := exec.LookPath("nats")
	if err != nil {
		return 0, 0, "the nats CLI is not on PATH; build it from tools/ (see README)"
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args = append([]string{"--server", url, "bench", "js", "pub", "async", subject,
		"--msgs", strconv.Itoa(msgs), "--stream", stream, "--no-progress"}, args...)
	cmd := exec.CommandContext(cctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Sprintf("nats bench failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	m := natsBenchRate.FindStringSubmatch(string(out))
	if m == nil {
		return 0, 0, "could not read the rate from nats bench's output"
	}
	v, _ := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	return v, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), ""
}

// waitCatchUp waits up to 5 minutes for central to hold total events, the
// sites' links back since restored, and returns when central got each
// site's first event after before, central's count by site when the
// links returned. It calls look, if set, with the time since restored at
// each of its looks.
func waitCatchUp(ctx context.Context, cjs jetstream.JetStream, before map[string]int, total int, restored time.Time, look func(time.Duration)) (resumed map[string]time.Duration, err error) {
	resumed = map[string]time.Duration{}
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if look != nil {
			look(time.Since(restored))
		}
		by, err := centralBySite(ctx, cjs)
		n := 0
		for site, c := range by {
			n += c
			if _, ok := resumed[site]; c > before[site] && !ok {
				resumed[site] = time.Since(restored)
			}
		}
		if err == nil && n >= total {
			return resumed, nil
		}
		if time.Now().After(deadline) {
			return resumed, fmt.Errorf("central holds %d of %d events 5 minutes", n, total)
		}
		if err := waitCtx(ctx, 10*time.Millisecond); err != nil {
			return resumed, err
		}
	}
}

// linkWatch notes when each site's leaf link to central is up again after
// a cut: the first look that lists a link of the site that was not listed
// when the cut ended (those lived through it, and the proxies close them).
type linkWatch struct {
	old map[string]bool
	up  map[string]time.Duration
}

func newLinkWatch(atEnd map[string][]string) *linkWatch {
	w := &linkWatch{old: map[string]bool{}, up: map[string]time.Duration{}}
	for _, ids := range atEnd {
		for _, id := range ids {
			w.old[id] = true
		}
	}
	return w
}

// look takes the links listed at, the time since the cut ended.
func (w *linkWatch) look(links map[string][]string, at time.Duration) {
	for site, ids := range links {
		if _, ok := w.up[site]; ok {
			continue
		}
		for _, id := range ids {
			if !w.old[id] {
				w.up[site] = at
				break
			}
		}
	}
}

// resumedAt is when central got the first event of the slowest site
// (first) and of the fastest (earliest, from which the rate is counted),
// and each site's, in site order, for the log.
func resumedAt(resumed map[string]time.Duration) (first, earliest time.Duration, each string) {
	first, earliest = -1, -1
	var parts []string
	for _, site := range slices.Sorted(maps.Keys(resumed)) {
		d := resumed[site]
		first = max(first, d)
		if earliest < 0 || d < earliest {
			earliest = d
		}
		parts = append(parts, site+" "+d.Round(time.Millisecond).String())
	}
	return first, earliest, strings.Join(parts, ", ")
}

func (res meshBenchResult) print(bc MeshConfig) error {
	if bc.JSON {
		return printJSON(bc.stdout(), res)
	}
	tw := tabwriter.NewWriter(bc.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEASURE\tVALUE")
	sites := "in this process"
	if res.SiteProcesses {
		sites = "in their own processes"
	}
	fmt.Fprintf(tw, "central ingest from %d sites (%s)\t%.0f events/s\n", res.Sites, sites, res.IngestPerSec)
	fmt.Fprintf(tw, "the sites' own stores, same run\t%.0f events/s\n", res.SitesStoredPerSec)
	fmt.Fprintf(tw, "catch-up after a %s WAN cut of %s (median of %d)%s\t%.0f events/s\n", res.CutMode, res.CutFor, res.Cuts, overWAN(bc.WANDelay), res.CatchUpPerSec)
	fmt.Fprintf(tw, "catch-up of every site started after the links returned\tp50 %s, max %s (%d cuts)\n", res.CatchUpStartP50, res.CatchUpStartMax, res.Cuts)
	fmt.Fprintf(tw, "longest a site's source consumer sat at its limit in a catch-up\t%s\n", res.CatchUpStallMax.Round(time.Millisecond))
	fmt.Fprintf(tw, "the sites' source consumers settled after the last catch-up\t%s (the latency run starts then)\n", res.LatencySettledAfter)
	fmt.Fprintf(tw, "latency to central's store p50 / p99 / max at %d events/s\t%s / %s / %s\n", res.LatencyRate, res.LatencyP50, res.LatencyP99, res.LatencyMax)
	for _, h := range res.LatencyHops {
		fmt.Fprintf(tw, "  %s\tp50 %s, p99 %s, max %s\n", h.Name, h.P50, h.P99, h.Max)
	}
	if res.NatsBenchPerSec > 0 {
		fmt.Fprintf(tw, "nats bench js pub async, same cluster\t%.0f msgs/s (ingest ratio %.2f, catch-up ratio %.2f)\n", res.NatsBenchPerSec, res.IngestVsNatsBench, res.CatchUpVsNatsBench)
	}
	if res.NatsBenchEventsPerSec > 0 {
		fmt.Fprintf(tw, "nats bench js pub async, a stream like EVENTS\t%.0f msgs/s (catch-up ratio %.2f)\n", res.NatsBenchEventsPerSec, res.CatchUpVsNatsBenchEvents)
	}
	if res.CatchUpVsCutAnchor > 0 {
		fmt.Fprintf(tw, "catch-up / the two nats benches run in its own cut (median of the cuts)\t%.2f, like EVENTS %.2f\n", res.CatchUpVsCutAnchor, res.CatchUpVsCutAnchorEvents)
	}
	return tw.Flush()
}

// latency measures, at res.LatencyRate for latencyFor, the time from an
// event's observation to its storing at central, hop by hop (the sites'
// event numbers from firstN on; the spools in dir).
func (res *meshBenchResult) latency(ctx context.Context, out io.Writer, dir string, mesh *meshtest.Mesh, siteJS []jetstream.JetStream, firstN int, latencyFor time.Duration, trace string) error {
	// 3. Latency at a steady rate: observation time to central's store
	// time, and each hop on the way, once the last catch-up is over.
	settled, err := settleSources(ctx, siteJS, time.Minute)
	if err != nil {
		return err
	}
	res.LatencySettledAfter = settled.Round(time.Millisecond).String()
	fmt.Fprintf(out, "latency: the sites' source consumers settled %s after the last catch-up (every one delivered all it stores, under its limit)\n", res.LatencySettledAfter)
	sw := watchSources(ctx, siteJS)
	t0, cpu0, gc0 := time.Now(), proccpu.Used(), gcCycles()
	lt, err := latencyRun(ctx, dir, siteJS, mesh.CentralJS, firstN, res.LatencyRate, res.DrainBatch, latencyFor)
	res.LatencySources = sw.stop()
	if err != nil {
		return err
	}
	// Over the whole run: from its first event to central's commit of
	// the last, and the sites' reading of their stored times after it.
	res.LatencyCores = (proccpu.Used() - cpu0).Seconds() / time.Since(t0).Seconds()
	res.LatencyGCs, res.LatencyLiveHeapMiB = gcCycles()-gc0, liveHeapMiB()
	events := lt.events
	lat := make([]time.Duration, 0, len(events))
	incomplete := 0
	for _, e := range events {
		if !e.complete() {
			incomplete++
			continue
		}
		lat = append(lat, e.centralStored.Sub(e.observed))
	}
	if incomplete > 0 {
		// Not seen at some point of its path: counted, not timed.
		fmt.Fprintf(out, "latency: %d events were not seen at every point of their path and are left out\n", incomplete)
	}
	slices.Sort(lat)
	res.LatencyEvents = len(lat)
	res.LatencyP50, res.LatencyP99, res.LatencyMax = hopQuantile(lat, 50), hopQuantile(lat, 99), hopQuantile(lat, 100)
	res.LatencyHops = hopStats(events)
	if trace != "" {
		if err := writeTrace(trace, events); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "latency at %d events/s (drain batch %d): %d events, observation to central's store p50 %s, p99 %s, max %s; this process used %.2f cores and collected garbage %d times (%.0f MiB live); by hop:\n",
		res.LatencyRate, res.DrainBatch, len(lat), res.LatencyP50, res.LatencyP99, res.LatencyMax, res.LatencyCores, res.LatencyGCs, res.LatencyLiveHeapMiB)
	printHops(out, res.LatencyHops)
	res.LatencyDrain = lt.drainStats()
	fmt.Fprintf(out, "  the drains: %s\n", res.LatencyDrain)
	fmt.Fprintf(out, "  the sources: %s\n", res.LatencySources)

	return nil
}

// natsAnchor runs the stock nats CLI against the same central cluster
// (natsBench), right after the ingest run, so that the two rates share the
// machine's load of the moment as closely as they can: first on a plain
// stream of its own making, then on one made like central's EVENTS
// (natsAnchorLikeEvents). A CPU profile of this process over the first
// goes to profile, if set.
func (res *meshBenchResult) natsAnchor(ctx context.Context, out io.Writer, mesh *meshtest.Mesh, profile string) error {
	stopProfile, err := StartCPUProfile(profile)
	if err != nil {
		return err
	}
	t0, cpu0 := time.Now(), proccpu.Used()
	perSec, cliCPU, why := natsBenchPlain(ctx, mesh, res.IngestEvents)
	took, cpu := time.Since(t0), proccpu.Used()-cpu0
	stopProfile()
	if why != "" {
		res.NatsBenchSkipped = why
		fmt.Fprintf(out, "nats bench js pub: skipped (%s)\n", why)
		return nil
	}
	res.NatsBenchPerSec = perSec
	res.IngestVsNatsBench = res.IngestPerSec / perSec
	res.NatsBenchCores, res.NatsBenchCLICores = cpu.Seconds()/took.Seconds(), cliCPU.Seconds()/took.Seconds()
	fmt.Fprintf(out, "nats bench js pub async (R3 file stream, 512 B, same cluster, right after the ingest): %.0f msgs/s; central ingest / nats bench = %.2f; this process used %.2f cores, the nats CLI %.2f (over the CLI's whole run, its stream's creation included)\n",
		perSec, res.IngestVsNatsBench, res.NatsBenchCores, res.NatsBenchCLICores)
	return res.natsAnchorLikeEvents(ctx, out, mesh)
}

// natsBenchPlain runs nats bench for msgs messages of 512 B on a plain R3
// file stream of its own on central (purged first, so that each run in a
// bench starts from an empty stream).
func natsBenchPlain(ctx context.Context, mesh *meshtest.Mesh, msgs int) (float64, time.Duration, string) {
	return natsBench(ctx, mesh.Central[0].ClientURL(), msgs, "bench.mesh", "benchstream",
		"--create", "--purge", "--replicas", "3", "--storage", "file", "--size", "512")
}

// likeEventsStream is the stream natsAnchorLikeEvents makes, and its
// subjects' prefix.
const likeEventsStream, likeEventsSubject = "benchevents", "bench.events"

// natsAnchorLikeEvents runs nats bench on a stream made like central's
// EVENTS: its configuration (R3, the Nats-Msg-Id duplicate window, the
// re-publish of what it stores, atomic publish), a bench event for
// payload, a message id on each, over 300 subjects (the bench's sites
// times their devices). What central does with a sourced event beyond
// that (the source's own work, the alarm processor's read) is then the
// difference between this rate and the catch-up's.
func (res *meshBenchResult) natsAnchorLikeEvents(ctx context.Context, out io.Writer, mesh *meshtest.Mesh) error {
	t0, cpu0 := time.Now(), proccpu.Used()
	perSec, cliCPU, size, why, err := natsBenchLikeEvents(ctx, mesh, res.IngestEvents)
	took, cpu := time.Since(t0), proccpu.Used()-cpu0
	if err != nil {
		return err
	}
	if why != "" {
		fmt.Fprintf(out, "nats bench js pub like EVENTS: skipped (%s)\n", why)
		return nil
	}
	res.NatsBenchEventsPerSec = perSec
	res.NatsBenchEventsCores, res.NatsBenchEventsCLICores = cpu.Seconds()/took.Seconds(), cliCPU.Seconds()/took.Seconds()
	fmt.Fprintf(out, "nats bench js pub async on a stream made like central's EVENTS (its duplicate window, re-publish and atomic publish; a bench event of %d B with a message id, 300 subjects): %.0f msgs/s; this process used %.2f cores, the nats CLI %.2f\n",
		size, perSec, res.NatsBenchEventsCores, res.NatsBenchEventsCLICores)
	return nil
}

// natsBenchLikeEvents makes the stream natsAnchorLikeEvents describes, runs
// nats bench for msgs messages on it, and deletes it. It returns the rate,
// the CLI's CPU, the payload's size, and why the bench was skipped, if it
// was.
func natsBenchLikeEvents(ctx context.Context, mesh *meshtest.Mesh, msgs int) (perSec float64, cliCPU time.Duration, size int, why string, err error) {
	cjs := mesh.CentralJS
	ev, err := cjs.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, 0, 0, "", err
	}
	cfg := ev.CachedInfo().Config
	cfg.Name, cfg.Description = likeEventsStream, "meshmon bench: nats bench on a stream made like EVENTS"
	cfg.Subjects = []string{likeEventsSubject + ".>"}
	cfg.Sources, cfg.Mirror = nil, nil
	cfg.RePublish = &jetstream.RePublish{Source: likeEventsSubject + ".>", Destination: bus.StoredPrefix + likeEventsSubject + ".>"}
	if _, err := cjs.CreateStream(ctx, cfg); err != nil {
		return 0, 0, 0, "", fmt.Errorf("nats bench like EVENTS: %w", err)
	}
	defer cjs.DeleteStream(context.WithoutCancel(ctx), likeEventsStream)
	payload, err := os.CreateTemp("", "meshmon-bench-event-")
	if err != nil {
		return 0, 0, 0, "", err
	}
	defer os.Remove(payload.Name())
	event := benchEvent("s1", 0, time.Now()).Data
	_, err = payload.Write(event)
	if cerr := payload.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, 0, "", err
	}
	perSec, cliCPU, why = natsBench(ctx, mesh.Central[0].ClientURL(), msgs, likeEventsSubject, likeEventsStream,
		"--multisubject", "--multisubjectmax", "300", "--dedup", "--payload", payload.Name())
	return perSec, cliCPU, len(event), why, nil
}

func (bc MeshConfig) validate() error {
	if bc.Sites < 1 || bc.Sites > 20 || bc.Events < 100 || bc.Rate < 1 || bc.Cuts < 1 || bc.CutFor < 0 {
		return errors.New("--sites must be 1 to 20, --events at least 100, --rate and --cuts at least 1, and --cut-for not negative")
	}
	if bc.Publishers < 1 || bc.Publishers > 64 {
		return fmt.Errorf("--publishers %d: must be 1 to 64", bc.Publishers)
	}
	if bc.DrainBatch < 1 || bc.DrainBatch > 10000 {
		return fmt.Errorf("--drain-batch %d: must be 1 to 10000, as the poller's batch", bc.DrainBatch)
	}
	if bc.CutMode != "silent" && bc.CutMode != "loud" {
		return fmt.Errorf("--cut-mode %q: must be 'silent' or 'loud'", bc.CutMode)
	}
	if bc.WANDelay < 0 || bc.WANDelay > maxWANDelay {
		return fmt.Errorf("--wan-delay %s: must be 0 to %s", bc.WANDelay, maxWANDelay)
	}
	return nil
}

// maxWANDelay bounds --wan-delay: a round trip of a second is past any
// link a site would use, and past the leaf link's own pings.
const maxWANDelay = 500 * time.Millisecond

// overWAN names the latency the WAN proxies added, if any.
func overWAN(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", %s each way on the links", d)
}
