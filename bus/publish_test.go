package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/proccpu"
)

func makeMsgs(prefix string, n, size int) []meshmon.Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = 'x'
	}
	msgs := make([]meshmon.Message, n)
	for i := range msgs {
		msgs[i] = meshmon.Message{
			Stream: meshmon.StreamEvents, Site: "hq", Device: "dev" + strconv.Itoa(i%10), Kind: meshmon.KindNodeDown,
			ID:   prefix + "-" + strconv.Itoa(i),
			Data: data,
		}
	}
	return msgs
}

// Measured on nats-server 2.15.2 / nats.go 1.55, embedded, file storage
// with SyncAlways, 512 B messages, 2 vCPU (go test -bench . -benchtime
// 20000x), msgs/s:
//
//	BenchmarkPublishBatch/batch=100     17k
//	BenchmarkPublishBatch/batch=1000    40-48k
//	BenchmarkPublishBatchResend         5-7k (every batch sent twice, the
//	                                    second time all duplicates: the
//	                                    pipelined fallback)
//	BenchmarkPublishBatchSpell          31-45k, 23-34k before the spells
//	                                    went one by one (-benchtime
//	                                    51200x, 2026-12-05)
//	BenchmarkRawAsync                   2.7-3.2k (js.PublishAsync, one fsync
//	                                    per message)
//	BenchmarkAtomicBatch/batch=100      15-17k
//	BenchmarkAtomicBatch/batch=1000     41-59k

func BenchmarkPublishBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			_, _, js := runJS(b)
			p := NewPublisher(js)
			ctx := context.Background()
			msgs := makeMsgs(nuid.Next(), b.N, 512)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(msgs); i += size {
				batch := msgs[i:min(i+size, len(msgs))]
				n, err := p.PublishBatch(ctx, batch)
				if err != nil || n != len(batch) {
					b.Fatalf("publish batch: %d of %d: %v", n, len(batch), err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkPublishSmallRuns compares, for the short runs a busy poller's
// spool sends, an atomic batch (nats-server stages each in a store of its
// own on disk) with the same run published message by message, pipelined
// (MaxAtomic 1). It reports the throughput and the CPU this process (the
// server with it) spent per message.
func BenchmarkPublishSmallRuns(b *testing.B) {
	for _, size := range []int{1, 2, 4, 8, 12, 16, 32, 64} {
		for _, mode := range []string{"atomic", "pipelined"} {
			b.Run(fmt.Sprintf("run=%d/%s", size, mode), func(b *testing.B) {
				_, _, js := runJS(b)
				p := NewPublisher(js)
				if mode == "pipelined" {
					p.MaxAtomic = 1
				}
				ctx := context.Background()
				msgs := makeMsgs(nuid.Next(), b.N, 512)
				b.ResetTimer()
				start, cpu0 := time.Now(), proccpu.Used()
				for i := 0; i < len(msgs); i += size {
					run := msgs[i:min(i+size, len(msgs))]
					if n, err := p.PublishBatch(ctx, run); err != nil || n != len(run) {
						b.Fatalf("publish: %d of %d: %v", n, len(run), err)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
				b.ReportMetric(float64((proccpu.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
			})
		}
	}
}

// BenchmarkPublishBatchResend measures the fallback path: every batch is
// sent twice, and the second time every id is a duplicate, so the atomic
// batch is refused and the run is published one message at a time.
func BenchmarkPublishBatchResend(b *testing.B) {
	_, _, js := runJS(b)
	p := NewPublisher(js)
	ctx := context.Background()
	msgs := makeMsgs(nuid.Next(), b.N, 512)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(msgs); i += 100 {
		batch := msgs[i:min(i+100, len(msgs))]
		for range 2 {
			if n, err := p.PublishBatch(ctx, batch); err != nil || n != len(batch) {
				b.Fatalf("publish batch: %d of %d: %v", n, len(batch), err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishBatchSpell models a poller group's take-over (issue
// 23): spells of 10 batches of 256 in which 15 of every 16 messages are
// already stored (the checks of devices the member that left had polled
// in the slot, with the survivor's own new samples between them), each
// followed by 10 batches of new messages. msgs/s counts every message
// sent, duplicate or not.
func BenchmarkPublishBatchSpell(b *testing.B) {
	const batch, spell = 256, 10
	_, _, js := runJS(b)
	p := NewPublisher(js)
	ctx := context.Background()
	msgs := makeMsgs(nuid.Next(), b.N, 512)
	// Store the spells' duplicates first, as the member that left did.
	var stored []meshmon.Message
	for i := range msgs {
		if (i/batch)%(2*spell) < spell && i%16 != 15 {
			stored = append(stored, msgs[i])
		}
	}
	for i := 0; i < len(stored); i += 1000 {
		chunk := stored[i:min(i+1000, len(stored))]
		if n, err := p.PublishBatch(ctx, chunk); err != nil || n != len(chunk) {
			b.Fatalf("store the duplicates: %d of %d: %v", n, len(chunk), err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(msgs); i += batch {
		run := msgs[i:min(i+batch, len(msgs))]
		if n, err := p.PublishBatch(ctx, run); err != nil || n != len(run) {
			b.Fatalf("publish batch: %d of %d: %v", n, len(run), err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkRawAsync(b *testing.B) {
	_, _, js := runJS(b)
	data := make([]byte, 512)
	subj := meshmon.EventSubject("hq", "dev", meshmon.KindNodeDown)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishAsync(subj, data, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not arrive")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkAtomicBatch measures nats-server's atomic batch publish
// (Nats-Batch-*) with Nats-Msg-Id, the alternative PublishBatch does not use.
func BenchmarkAtomicBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			_, nc, _ := runJS(b)
			ctx := context.Background()
			msgs := makeMsgs(nuid.Next(), b.N, 512)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(msgs); i += size {
				batch := msgs[i:min(i+size, len(msgs))]
				if err := atomicBatch(ctx, nc, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// atomicBatch publishes msgs as one atomic batch and waits for the commit
// ack.
func atomicBatch(ctx context.Context, nc *nats.Conn, msgs []meshmon.Message) error {
	id := nuid.Next()
	for i, m := range msgs {
		h := nats.Header{}
		h.Set(jetstream.MsgIDHeader, m.ID)
		h.Set("Nats-Batch-Id", id)
		h.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		nm := &nats.Msg{Subject: m.Subject(), Data: m.Data, Header: h}
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(nm); err != nil {
				return err
			}
			continue
		}
		h.Set("Nats-Batch-Commit", "1")
		resp, err := nc.RequestMsgWithContext(ctx, nm)
		if err != nil {
			return err
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
			Count int                 `json:"count"`
		}
		if err := jsonUnmarshal(resp.Data, &ack); err != nil {
			return err
		}
		if ack.Error != nil {
			return ack.Error
		}
		if ack.Count != len(msgs) {
			return fmt.Errorf("commit ack count %d, want %d", ack.Count, len(msgs))
		}
	}
	return nil
}

// TestAtomicBatchRefusesDuplicates records why PublishBatch does not use
// atomic batches: one already-stored id fails the whole batch.
func TestAtomicBatchRefusesDuplicates(t *testing.T) {
	_, nc, _ := runJS(t)
	ctx := testCtx(t)
	msgs := makeMsgs(nuid.Next(), 10, 64)
	if err := atomicBatch(ctx, nc, msgs[:5]); err != nil {
		t.Fatalf("first batch: %v", err)
	}
	err := atomicBatch(ctx, nc, msgs)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10201 {
		t.Fatalf("batch with a stored id: got %v, want API error 10201", err)
	}
}

// storedIDs returns the Nats-Msg-Id of every message of stream, in order.
func storedIDs(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) []string {
	t.Helper()
	var ids []string
	err := Tail(ctx, js, TailOptions{Stream: stream, StartSeq: 1}, func(m TailMsg) error {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return ids
}

func TestPublishBatchOrderAndDedup(t *testing.T) {
	for _, c := range []struct{ minAtomic, maxAtomic int }{{DefaultMinAtomic, 1000}, {2, 7}, {2, 1000}, {DefaultMinAtomic, 1}} {
		t.Run(fmt.Sprintf("atomic=%d-%d", c.minAtomic, c.maxAtomic), func(t *testing.T) {
			_, _, js := runJS(t)
			ctx := testCtx(t)
			p := NewPublisher(js)
			p.MinAtomic, p.MaxAtomic = c.minAtomic, c.maxAtomic
			msgs := makeMsgs("m", 50, 32)
			// Interleave a metric sample to split the runs.
			msgs[20].Stream, msgs[20].Device, msgs[20].Kind = meshmon.StreamMetrics, "dev0", "icmp"
			if n, err := p.PublishBatch(ctx, msgs[:30]); err != nil || n != 30 {
				t.Fatalf("first: %d, %v", n, err)
			}
			// The whole batch again: the first 30 are duplicates, and an id
			// repeated within the batch is stored once.
			again := append(append([]meshmon.Message{}, msgs...), msgs[45])
			if n, err := p.PublishBatch(ctx, again); err != nil || n != len(again) {
				t.Fatalf("second: %d, %v", n, err)
			}
			var want []string
			for i, m := range msgs {
				if i != 20 {
					want = append(want, m.ID)
				}
			}
			if got := storedIDs(t, ctx, js, EventsStream); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("events stored:\n got %v\nwant %v", got, want)
			}
			if got := storedIDs(t, ctx, js, MetricsStream); len(got) != 1 || got[0] != msgs[20].ID {
				t.Fatalf("metrics stored: %v", got)
			}
		})
	}
}

// wire is a subscription to the events as PublishBatch sends them.
type wire struct{ *nats.Subscription }

func watchWire(t *testing.T, nc *nats.Conn) wire {
	t.Helper()
	sub, err := nc.SubscribeSync(meshmon.EventSubject("hq", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return wire{sub}
}

// count reads the next n messages sent and counts those sent in an
// atomic batch and those sent one by one.
func (w wire) count(t *testing.T, n int) (batched, single int) {
	t.Helper()
	for range n {
		m, err := w.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d of %d on the wire: %v", batched+single+1, n, err)
		}
		if m.Header.Get(hdrBatchID) != "" {
			batched++
		} else {
			single++
		}
	}
	return batched, single
}

// TestPublishBatchShortRunsOneByOne: a run shorter than MinAtomic goes
// message by message, a longer one as an atomic batch (its messages carry
// the batch headers on the wire).
func TestPublishBatchShortRunsOneByOne(t *testing.T) {
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	wire := watchWire(t, nc)
	p := NewPublisher(js)
	for _, n := range []int{DefaultMinAtomic - 1, DefaultMinAtomic} {
		msgs := makeMsgs("s"+strconv.Itoa(n), n, 32)
		if acked, err := p.PublishBatch(ctx, msgs); err != nil || acked != n {
			t.Fatalf("run of %d: %d acked, %v", n, acked, err)
		}
		batched, _ := wire.count(t, n)
		if want := map[bool]int{true: n, false: 0}[n >= DefaultMinAtomic]; batched != want {
			t.Errorf("run of %d: %d messages sent in an atomic batch, want %d", n, batched, want)
		}
	}
}

// TestPublishBatchDuplicateSpell: after a run held a duplicate, the next
// run's head goes message by message, without the atomic attempt that the
// server would refuse whole; when the head holds a duplicate too, so does
// the rest, and when it holds none the rest goes as an atomic batch again.
// Every message is stored once, in order.
func TestPublishBatchDuplicateSpell(t *testing.T) {
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	wire := watchWire(t, nc)
	p := NewPublisher(js)
	head := DefaultMinAtomic
	n := 2*head + 4
	msgs := makeMsgs("d", 5*n, 32)
	runA, runB, runC, runD, runE := msgs[:n], msgs[n:2*n], msgs[2*n:3*n], msgs[3*n:4*n], msgs[4*n:]
	// B's last message is A's first again; the last of C's head and C's
	// last are B's second and third.
	withDup := func(run []meshmon.Message, dup meshmon.Message, at int) []meshmon.Message {
		r := append([]meshmon.Message{}, run...)
		r[at] = dup
		return r
	}
	steps := []struct {
		name string
		run  []meshmon.Message
		// sent on the wire: in an atomic batch, message by message
		batched, single int
	}{
		{"new run", runA, n, 0},
		{"a duplicate: refused once, then one by one", withDup(runB, runA[0], n-1), n, n},
		{"duplicates in the head and the rest: one by one at once", withDup(withDup(runC, runB[1], head-1), runB[2], n-1), 0, n},
		{"no duplicate, after a spell: the head one by one, the rest atomic", runD, n - head, head},
		{"no duplicate: atomic again", runE, n, 0},
	}
	for _, s := range steps {
		if acked, err := p.PublishBatch(ctx, s.run); err != nil || acked != len(s.run) {
			t.Fatalf("%s: %d acked, %v", s.name, acked, err)
		}
		batched, single := wire.count(t, s.batched+s.single)
		if m, err := wire.NextMsg(50 * time.Millisecond); err == nil {
			t.Fatalf("%s: one more message on the wire than expected: %s", s.name, m.Header.Get(jetstream.MsgIDHeader))
		}
		if batched != s.batched || single != s.single {
			t.Errorf("%s: %d sent in an atomic batch and %d one by one, want %d and %d", s.name, batched, single, s.batched, s.single)
		}
	}
	var want []string
	for i, m := range msgs {
		if i != 2*n-1 && i != 2*n+head-1 && i != 3*n-1 {
			want = append(want, m.ID)
		}
	}
	if got := storedIDs(t, ctx, js, EventsStream); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored:\n got %v\nwant %v", got, want)
	}
}

func TestPublishBatchRejected(t *testing.T) {
	_, nc, js := runJS(t)
	ctx := testCtx(t)
	p := NewPublisher(js)
	msgs := makeMsgs("r", 6, 32)
	msgs[2].Data = make([]byte, nc.MaxPayload()+1)
	n, err := p.PublishBatch(ctx, msgs)
	if !errors.Is(err, meshmon.ErrRejected) || n != 2 || !strings.Contains(err.Error(), "message 2") {
		t.Fatalf("too large: %d, %v; want 2 and meshmon.ErrRejected for message 2", n, err)
	}
	// The caller drops it and goes on.
	rest := msgs[3:]
	rest[1].Stream = 0 // no stream
	n, err = p.PublishBatch(ctx, rest)
	if !errors.Is(err, meshmon.ErrRejected) || n != 1 {
		t.Fatalf("no stream: %d, %v; want 1 and meshmon.ErrRejected", n, err)
	}
	rest[2].ID = ""
	n, err = p.PublishBatch(ctx, rest[2:])
	if !errors.Is(err, meshmon.ErrRejected) || n != 0 {
		t.Fatalf("no id: %d, %v; want 0 and meshmon.ErrRejected", n, err)
	}
	if got := storedIDs(t, ctx, js, EventsStream); strings.Join(got, ",") != "r-0,r-1,r-3" {
		t.Fatalf("stored %v", got)
	}
}

// TestPublishBatchServerDies stops the server in the middle of a large
// batch: what PublishBatch reports as acked is stored and survives the
// restart, and publishing the rest again leaves every message stored
// exactly once, in order.
func TestPublishBatchServerDies(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, serverOpts(t, dir))
	_, js := connect(t, ts.srv.ClientURL())
	ctx := testCtx(t)
	if err := EnsureStreams(ctx, js, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	_, watchJS := connect(t, ts.srv.ClientURL())

	p := NewPublisher(js)
	p.MaxAtomic = 20
	p.AckWait = 2 * time.Second
	msgs := makeMsgs("d", 20000, 256)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := p.PublishBatch(ctx, msgs)
		done <- result{n, err}
	}()
	eventually.NoError(t, 20*time.Second, "the stream state", func() error {
		s, err := watchJS.Stream(ctx, EventsStream)
		if err != nil {
			return err
		}
		if s.CachedInfo().State.Msgs < 100 {
			return errors.New("not enough stored yet")
		}
		return nil
	})
	ts.srv.Shutdown()
	ts.srv.WaitForShutdown()
	r := <-done
	if r.err == nil || r.n >= len(msgs) {
		t.Fatalf("batch across a server stop: %d, %v; want an error and a prefix", r.n, r.err)
	}
	if errors.Is(r.err, meshmon.ErrRejected) {
		t.Fatalf("a dead server is not a rejection: %v", r.err)
	}
	t.Logf("acked %d of %d before the stop: %v", r.n, len(msgs), r.err)

	opts := serverOpts(t, dir)
	ts2 := startServer(t, opts)
	_, js2 := connect(t, ts2.srv.ClientURL())
	eventually.NoError(t, 10*time.Second, "the streams ensured after the restart", func() error { return EnsureStreams(ctx, js2, DefaultStreamLimits()) })
	stored := storedIDs(t, ctx, js2, EventsStream)
	if len(stored) < r.n {
		t.Fatalf("%d acked but %d stored after restart", r.n, len(stored))
	}
	for i := 0; i < r.n; i++ {
		if stored[i] != msgs[i].ID {
			t.Fatalf("stored[%d] = %s, want %s", i, stored[i], msgs[i].ID)
		}
	}
	p2 := NewPublisher(js2)
	if n, err := p2.PublishBatch(ctx, msgs[r.n:]); err != nil || n != len(msgs)-r.n {
		t.Fatalf("retry: %d, %v", n, err)
	}
	stored = storedIDs(t, ctx, js2, EventsStream)
	if len(stored) != len(msgs) {
		t.Fatalf("%d stored, want %d", len(stored), len(msgs))
	}
	for i := range msgs {
		if stored[i] != msgs[i].ID {
			t.Fatalf("stored[%d] = %s, want %s", i, stored[i], msgs[i].ID)
		}
	}
}
