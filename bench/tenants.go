package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/internal/proccpu"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

type tenantsBenchResult struct {
	Tenants     int    `json:"tenants"`
	CreateP50   string `json:"create_p50"`
	CreateP99   string `json:"create_p99"`
	CreateMax   string `json:"create_max"`
	CreateTotal string `json:"create_total"`
	HeapBefore  int64  `json:"heap_bytes_before"`
	HeapAfter   int64  `json:"heap_bytes_after"`
	SysBefore   int64  `json:"sys_bytes_before"`
	SysAfter    int64  `json:"sys_bytes_after"`
	OpsJWTBytes int    `json:"ops_jwt_bytes"`
	// The process's CPU, in cores, over idleWindow with nothing asked of
	// it, with one tenant and with all of them: what the tenants cost a
	// central at rest (its looks over every account's streams).
	IdleCoresBefore float64 `json:"idle_cores_before"`
	IdleCoresAfter  float64 `json:"idle_cores_after"`
	IngestBefore    float64 `json:"ingest_msgs_per_s_before"`
	IngestAfter     float64 `json:"ingest_msgs_per_s_after"`
	IngestRatio     float64 `json:"ingest_ratio_after_before"`
	// The runs IngestBefore and IngestAfter are the medians of.
	IngestBeforeRuns []float64 `json:"ingest_msgs_per_s_before_runs"`
	IngestAfterRuns  []float64 `json:"ingest_msgs_per_s_after_runs"`
	// The store disk's rate of fsynced 512-byte appends (diskSyncRate)
	// just before each of those runs, and the ingest ratio with each run
	// taken against it: the tenant's ingest is bound by fsyncs, and a
	// virtual disk's fsyncs speed up and slow down by half or more
	// between minutes, so that the raw ratio can say more of the disk
	// than of the tenants.
	DiskSyncsBeforeRuns []float64 `json:"disk_syncs_per_s_before_runs"`
	DiskSyncsAfterRuns  []float64 `json:"disk_syncs_per_s_after_runs"`
	IngestRatioDisk     float64   `json:"ingest_ratio_after_before_per_disk_sync"`
	// Settle is how long the bench waited after the last create.
	Settle string `json:"settle"`
	// With a neighbour tenant over its disk limit and publishing all the
	// while (its publishes refused): at a poller's pace (NeighbourRate a
	// second), and as fast as four publishers go; against IngestAfter.
	NeighbourRate         int     `json:"neighbour_msgs_per_s,omitempty"`
	IngestNeighbourPaced  float64 `json:"ingest_msgs_per_s_neighbour_paced,omitempty"`
	NeighbourPacedRefused int     `json:"neighbour_paced_publishes_refused,omitempty"`
	NeighbourPacedRatio   float64 `json:"ingest_ratio_neighbour_paced_after,omitempty"`
	IngestNeighbourFlood  float64 `json:"ingest_msgs_per_s_neighbour_flood,omitempty"`
	NeighbourFloodRefused int     `json:"neighbour_flood_publishes_refused,omitempty"`
	NeighbourFloodRatio   float64 `json:"ingest_ratio_neighbour_flood_after,omitempty"`
	MessageBytes          int     `json:"message_bytes"`
	IngestMessages        int     `json:"ingest_messages"`
}

// Tenants creates many tenants on one central peer in operator mode, as
// 'tenant create' does, and measures the time per create, the process's
// memory, and one tenant's ingest before, after, and beside a tenant over
// its disk limit.
func Tenants(ctx context.Context, bc TenantsConfig) error {
	n, msgs, size, disk := bc.Tenants, bc.Msgs, bc.Size, bc.Disk
	lim, err := bc.validate()
	if err != nil {
		return err
	}
	out := bc.stdout()
	if bc.JSON {
		out = bc.stderr()
	}
	dir, err := os.MkdirTemp("", "meshmon-bench-tenants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := tenancy.Init(filepath.Join(dir, "keys"), "bench")
	if err != nil {
		return err
	}
	// Each tenant's streams reserve their maximum size against the store.
	p, err := meshtest.OperatorCentral(ctx, dir, "bench-central", st, int64(n+1)*disk)
	if err != nil {
		return err
	}
	defer p.Close()
	url := p.ClientURL()
	dial := func(creds []byte) (*nats.Conn, error) {
		auth, err := tenancy.CredsOption(creds)
		if err != nil {
			return nil, err
		}
		return nats.Connect(url, auth)
	}
	sysCreds, err := st.SystemCreds(0)
	if err != nil {
		return err
	}
	sys, err := dial(sysCreds)
	if err != nil {
		return err
	}
	defer sys.Close()

	// create does what 'meshmon tenant create' does.
	create := func(name string) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, _, err := provision.Create(cctx, st, sys, dial, name, lim, 1)
		return err
	}
	if err := create("t00000"); err != nil {
		return fmt.Errorf("tenant 1: %w", err)
	}
	creds, err := st.AdminCreds("t00000", 0)
	if err != nil {
		return err
	}
	ing, err := dial(creds)
	if err != nil {
		return err
	}
	defer ing.Close()
	ijs, err := jetstream.New(ing)
	if err != nil {
		return err
	}
	ingest := func() (float64, error) { return ingestRun(ctx, ijs, msgs, size, disk) }
	// anchored runs ingestRuns ingests, each after a look at the disk's
	// fsync rate: the median rate, every rate, and the disk's before each.
	anchored := func() (median float64, runs, syncs []float64, err error) {
		median, runs, err = medianOf(ingestRuns, func() (float64, error) {
			r, err := diskSyncRate(dir)
			if err != nil {
				return 0, err
			}
			syncs = append(syncs, r)
			return ingest()
		})
		return median, runs, syncs, err
	}
	res := tenantsBenchResult{Tenants: n, MessageBytes: size, IngestMessages: msgs, Settle: bc.Settle.String()}
	res.HeapBefore, res.SysBefore = heap()
	res.IdleCoresBefore = idleCores(ctx)
	if res.IngestBefore, res.IngestBeforeRuns, res.DiskSyncsBeforeRuns, err = anchored(); err != nil {
		return err
	}
	fmt.Fprintf(out, "one tenant ingests %.0f msg/s (%d B; the disk %s fsynced appends/s); creating %d more tenants...\n", res.IngestBefore, size, rates(res.DiskSyncsBeforeRuns), n-1)
	times, total, err := createMany(out, n, create)
	if err != nil {
		return err
	}
	// nats-server writes each new stream's state file 2 to 2.5 minutes
	// after its creation (filestore.go, flushStreamStateLoop), five a
	// tenant: after thousands of creates those writes go on that long,
	// and they are not what a central of that many tenants does at rest.
	if bc.Settle > 0 {
		fmt.Fprintf(out, "waiting %s for the new streams' first state writes (nats-server makes them 2 to 2.5 minutes after each creation)...\n", bc.Settle)
		if err := waitCtx(ctx, bc.Settle); err != nil {
			return err
		}
	}
	res.HeapAfter, res.SysAfter = heap()
	res.IdleCoresAfter = idleCores(ctx)
	if res.IngestAfter, res.IngestAfterRuns, res.DiskSyncsAfterRuns, err = anchored(); err != nil {
		return err
	}
	res.IngestRatioDisk = perSync(res.IngestAfterRuns, res.DiskSyncsAfterRuns) / perSync(res.IngestBeforeRuns, res.DiskSyncsBeforeRuns)
	if n >= 2 {
		fmt.Fprintf(out, "filling tenant t00001's disk; then t00000 ingests while t00001 keeps publishing...\n")
		if err := res.neighbours(ctx, st, dial, bc.NeighbourRate, ingest); err != nil {
			return err
		}
	}
	ops, _, err := st.OpsAccount() // as the last create pushed it
	if err != nil {
		return err
	}
	res.OpsJWTBytes = len(ops)
	res.IngestRatio = res.IngestAfter / res.IngestBefore
	res.CreateTotal = total.Round(time.Millisecond).String()
	if len(times) > 0 {
		slices.Sort(times)
		res.CreateP50, res.CreateP99, res.CreateMax = quantile(times, 0.5), quantile(times, 0.99), quantile(times, 1)
	}
	return res.print(bc)
}

// fillTenant fills tenant name's disk and returns a JetStream context of
// one of its admins (the caller closes its connection).
func fillTenant(ctx context.Context, st *tenancy.Store, dial func([]byte) (*nats.Conn, error), name string) (*filledTenant, error) {
	creds, err := st.AdminCreds(name, 0)
	if err != nil {
		return nil, err
	}
	nc, err := dial(creds)
	if err != nil {
		return nil, err
	}
	filled := false
	defer func() {
		if !filled {
			nc.Close()
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILL", Subjects: []string{"meshmon.fill.>"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	// Big chunks, then the publishers' own size, until even that is refused.
	for _, chunk := range [][]byte{make([]byte, 64<<10), make([]byte, 512)} {
		for i := 0; ; i++ {
			_, err := js.Publish(ctx, "meshmon.fill.x", chunk)
			if errors.Is(err, jetstream.ErrNoStreamResponse) || err == nil && i > 1_000_000 {
				return nil, fmt.Errorf("tenant %s never filled its disk: %v", name, err)
			}
			if err != nil {
				break // full: "resource limits exceeded for account"
			}
		}
	}
	filled = true
	return &filledTenant{name: name, nc: nc, js: js}, nil
}

type filledTenant struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream
}

func (f *filledTenant) Close() { f.nc.Close() }

// ingestBeside runs ingest while the full tenant keeps publishing 512-byte
// messages: rate a second from one publisher, or, with rate 0, as fast as
// four publishers go. It returns ingest's rate and how many of the full
// tenant's publishes were refused meanwhile; it fails if any was stored.
func ingestBeside(full *filledTenant, rate int, ingest func() (float64, error)) (float64, int, error) {
	small := make([]byte, 512)
	stop := make(chan struct{})
	publishers := 4
	if rate > 0 {
		publishers = 1
	}
	counts := make(chan [2]int, publishers)
	for range publishers {
		go func() {
			var refused, stored int
			// next waits for the next burst; it reports false once stopped.
			burst, next := 1, func() bool {
				select {
				case <-stop:
					return false
				default:
					return true
				}
			}
			if rate > 0 {
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				burst, next = max(rate/100, 1), func() bool {
					select {
					case <-stop:
						return false
					case <-tick.C:
						return true
					}
				}
			}
			for next() {
				for range burst {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					if _, err := full.js.Publish(ctx, "meshmon.fill.x", small); err != nil {
						refused++
					} else {
						stored++
					}
					cancel()
				}
			}
			counts <- [2]int{refused, stored}
		}()
	}
	got, ierr := ingest()
	close(stop)
	refused, stored := 0, 0
	for range publishers {
		c := <-counts
		refused, stored = refused+c[0], stored+c[1]
	}
	if ierr != nil {
		return 0, 0, ierr
	}
	if stored > 0 {
		return 0, 0, fmt.Errorf("tenant %s stored %d messages over its disk limit", full.name, stored)
	}
	return got, refused, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (res tenantsBenchResult) print(bc TenantsConfig) error {
	if bc.JSON {
		return printJSON(bc.stdout(), res)
	}
	tw := tabwriter.NewWriter(bc.stdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEASURE\tVALUE")
	fmt.Fprintf(tw, "tenant create (sign, push, streams)\tp50 %s, p99 %s, max %s; %d in %s\n", res.CreateP50, res.CreateP99, res.CreateMax, res.Tenants-1, res.CreateTotal)
	fmt.Fprintf(tw, "memory of this process (peer and bench): live heap after GC / held from the OS\t%s / %s with 1 tenant, %s / %s with %d\n",
		mib(res.HeapBefore), mib(res.SysBefore), mib(res.HeapAfter), mib(res.SysAfter), res.Tenants)
	fmt.Fprintf(tw, "ops account JWT (pushed when it changes, not on a create)\t%d bytes\n", res.OpsJWTBytes)
	fmt.Fprintf(tw, "this process's CPU at rest, over %s\t%.3f cores with 1 tenant, %.3f with %d\n", idleWindow, res.IdleCoresBefore, res.IdleCoresAfter, res.Tenants)
	fmt.Fprintf(tw, "one tenant's ingest (%d x %d B, async; median of %d runs)\t%.0f msg/s with 1 tenant (%s), %.0f msg/s with %d (%s): ratio %.2f\n",
		res.IngestMessages, res.MessageBytes, ingestRuns, res.IngestBefore, rates(res.IngestBeforeRuns), res.IngestAfter, res.Tenants, rates(res.IngestAfterRuns), res.IngestRatio)
	fmt.Fprintf(tw, "the same, each run over the disk's fsynced appends/s just before it\tratio %.2f (the disk: %s before, %s after; measured %s after the last create)\n",
		res.IngestRatioDisk, rates(res.DiskSyncsBeforeRuns), rates(res.DiskSyncsAfterRuns), res.Settle)
	if res.Tenants >= 2 {
		fmt.Fprintf(tw, "the same while another tenant, over its disk, publishes %d msg/s\t%.0f msg/s (%d of its publishes refused meanwhile): ratio %.2f to the run before\n",
			res.NeighbourRate, res.IngestNeighbourPaced, res.NeighbourPacedRefused, res.NeighbourPacedRatio)
		fmt.Fprintf(tw, "the same while it publishes as fast as 4 publishers in this process go\t%.0f msg/s (%d refused): ratio %.2f\n",
			res.IngestNeighbourFlood, res.NeighbourFloodRefused, res.NeighbourFloodRatio)
	}
	return tw.Flush()
}

// ingestRuns is how many ingest runs the figures with one tenant and with
// all of them are the medians of: one run's rate moves by half between
// runs on this machine (fsync).
const ingestRuns = 3

// medianOf runs run n times and returns the median rate and every rate.
func medianOf(n int, run func() (float64, error)) (float64, []float64, error) {
	var all []float64
	for range n {
		r, err := run()
		if err != nil {
			return 0, all, err
		}
		all = append(all, r)
	}
	sorted := slices.Sorted(slices.Values(all))
	return sorted[len(sorted)/2], all, nil
}

// perSync is the median of the runs' rates, each over the disk's fsync
// rate measured just before it.
func perSync(runs, syncs []float64) float64 {
	per := make([]float64, len(runs))
	for i := range runs {
		per[i] = runs[i] / syncs[i]
	}
	slices.Sort(per)
	return per[len(per)/2]
}

// diskSyncFor is how long diskSyncRate appends.
const diskSyncFor = time.Second

// diskSyncRate appends 512 bytes and fsyncs, over and over for
// diskSyncFor, to a file in dir (the store's file system), and returns
// the appends a second: what the disk allows a stream that fsyncs every
// write, at that moment.
func diskSyncRate(dir string) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 512)
	n, start := 0, time.Now()
	for time.Since(start) < diskSyncFor {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rates lists rates as "4911, 5020, 4876".
func rates(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(out, ", ")
}

// idleWindow is how long idleCores measures.
const idleWindow = 10 * time.Second

// idleCores is the CPU this process uses over idleWindow, in cores, with
// nothing asked of it.
func idleCores(ctx context.Context) float64 {
	cpu0, t0 := proccpu.Used(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(idleWindow):
	}
	return (proccpu.Used() - cpu0).Seconds() / time.Since(t0).Seconds()
}

// ingestRun publishes msgs messages of size bytes into a stream of its own,
// made for the run and deleted after it, so the tenant stays within its
// disk, and returns the rate.
func ingestRun(ctx context.Context, ijs jetstream.JetStream, msgs, size int, disk int64) (float64, error) {
	payload := make([]byte, size)
	if _, err := ijs.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"meshmon.bench.>"}, MaxBytes: disk / 10, Storage: jetstream.FileStorage}); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < msgs; i++ {
		if _, err := ijs.PublishAsync("meshmon.bench.x", payload, jetstream.WithStallWait(30*time.Second)); err != nil {
			return 0, err
		}
	}
	select {
	case <-ijs.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return 0, errors.New("ingest: acknowledgements did not arrive within 2 minutes")
	}
	rate := float64(msgs) / time.Since(start).Seconds()
	return rate, ijs.DeleteStream(ctx, "BENCH")
}

// neighbours fills tenant t00001's disk and measures t00000's ingest while
// t00001 keeps publishing, first at rate, then as fast as it goes.
func (res *tenantsBenchResult) neighbours(ctx context.Context, st *tenancy.Store, dial func([]byte) (*nats.Conn, error), rate int, ingest func() (float64, error)) error {
	full, err := fillTenant(ctx, st, dial, "t00001")
	if err != nil {
		return err
	}
	defer full.Close()
	res.NeighbourRate = rate
	if res.IngestNeighbourPaced, res.NeighbourPacedRefused, err = ingestBeside(full, res.NeighbourRate, ingest); err != nil {
		return err
	}
	if res.IngestNeighbourFlood, res.NeighbourFloodRefused, err = ingestBeside(full, 0, ingest); err != nil {
		return err
	}
	res.NeighbourPacedRatio = res.IngestNeighbourPaced / res.IngestAfter
	res.NeighbourFloodRatio = res.IngestNeighbourFlood / res.IngestAfter
	return nil
}

// heap is the live heap after a GC and the memory the Go runtime holds
// from the OS.
func heap() (int64, int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.Sys)
}

// createMany creates tenants 2 to n with create and returns how long each
// took and all of them together.
func createMany(out io.Writer, n int, create func(name string) error) ([]time.Duration, time.Duration, error) {
	times := []time.Duration{}
	begin := time.Now()
	for i := 1; i < n; i++ {
		t0 := time.Now()
		if err := create(fmt.Sprintf("t%05d", i)); err != nil {
			return nil, 0, fmt.Errorf("tenant %d: %w", i+1, err)
		}
		times = append(times, time.Since(t0))
		if (i+1)%100 == 0 {
			fmt.Fprintf(out, "  %d tenants, last create %s\n", i+1, times[len(times)-1].Round(time.Millisecond))
		}
	}
	return times, time.Since(begin), nil
}

// quantile is the q quantile of sorted times, rounded to the millisecond.
func quantile(times []time.Duration, q float64) string {
	return times[int(q*float64(len(times)-1))].Round(time.Millisecond).String()
}

// validate checks bc and returns each tenant's limits.
func (bc TenantsConfig) validate() (tenancy.Limits, error) {
	lim := tenancy.DefaultLimits()
	if n, msgs, size := bc.Tenants, bc.Msgs, bc.Size; n < 1 || n > 100_000 || msgs < 1 || size < 1 || size > 1<<20 {
		return lim, errors.New("--tenants must be 1 to 100000, --msgs at least 1, --size 1 to 1048576")
	}
	if bc.Settle < 0 {
		return lim, errors.New("--settle must not be negative")
	}
	if bc.NeighbourRate < 1 {
		return lim, errors.New("--neighbour-rate must be at least 1 (messages a second)")
	}
	lim.DiskBytes = bc.Disk
	return lim, lim.Validate()
}
