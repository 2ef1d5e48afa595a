package poller

import (
	"container/heap"
	"context"
	"hash/fnv"
	"sync"
	"time"
)

// scheduler is a min-heap of due times, one entry per device. A dispatcher
// pops due entries and hands them to a bounded pool of workers; a device is
// never queued while its previous poll is running, so a slow device holds
// one worker and delays no other.
type scheduler struct {
	mu      sync.Mutex
	entries entryHeap
	kick    chan struct{}
}

type entry struct {
	at   time.Time // when to poll
	slot time.Time // the interval slot the poll belongs to: part of message ids
	name string
	gen  uint64
}

type job struct {
	t    *target
	name string
	slot time.Time
	due  time.Time
}

func newScheduler() *scheduler {
	return &scheduler{kick: make(chan struct{}, 1)}
}

// add schedules a poll of name at at, in the slot that contains slotOf.
func (s *scheduler) add(name string, gen uint64, at, slotOf time.Time) {
	s.mu.Lock()
	heap.Push(&s.entries, entry{at: at, slot: slotOf, name: name, gen: gen})
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// addAll schedules the polls es in one go: pushed one by one while they
// are few against the heap, else appended and the heap made again.
func (s *scheduler) addAll(es []entry) {
	if len(es) == 0 {
		return
	}
	s.mu.Lock()
	if len(es) < len(s.entries)/4 {
		for _, e := range es {
			heap.Push(&s.entries, e)
		}
	} else {
		s.entries = append(s.entries, es...)
		heap.Init(&s.entries)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// next returns the earliest entry without removing it.
func (s *scheduler) next() (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) == 0 {
		return entry{}, false
	}
	return s.entries[0], true
}

func (s *scheduler) pop() entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return heap.Pop(&s.entries).(entry)
}

// offset spreads devices over their whole interval, the same way in every
// process, so two pollers observe a device in the same slot. It spread
// them over the first half only: at 30,000 devices on a 60 s cycle, three
// pollers on two cores kept the machine busy for the first 30 s of each
// minute and idle for the rest, and a failover that fell in the busy half
// polled its devices about twice as slowly as one in the idle half
// (issue 23).
func offset(name string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(interval))
}

// firstRun returns the first slot of a device whose polls are spread (a
// poller's start): the slot of now if the device's offset in it is still
// to come, else the next, and when to poll in it. So the device is polled
// once a slot from the start, at the offset every process gives it. Polled
// at now plus its offset instead, it was polled twice in the first
// interval whenever now plus the offset crossed into the next slot, where
// nextRun then put its second poll: at a start late in the slot, nearly
// every device, and a poller starting with 100,000 devices started its
// polls up to 4.8 s late (issue 19).
func firstRun(name string, interval time.Duration, now time.Time) (slot, at time.Time) {
	if interval <= 0 {
		return now, now
	}
	off := offset(name, interval)
	slot = now.Truncate(interval)
	if slot.Add(off).Before(now) {
		slot = slot.Add(interval)
	}
	return slot, slot.Add(off)
}

// nextRun returns the slot after prev and when to poll in it; slots that
// have already passed are skipped.
func nextRun(name string, interval time.Duration, prev, now time.Time) (slot, at time.Time) {
	off := offset(name, interval)
	if prev.After(now) {
		// The wall clock stepped back: follow it rather than wait out the step.
		prev = now.Truncate(interval).Add(-interval)
	}
	slot = prev.Truncate(interval).Add(interval)
	if slot.Add(off).Before(now) {
		slot = now.Truncate(interval)
		if !slot.After(prev.Truncate(interval)) {
			slot = slot.Add(interval)
		}
	}
	at = slot.Add(off)
	if at.Before(now) {
		at = now
	}
	return slot, at
}

// dispatch hands due devices to workers until ctx is done. The workers
// come as they are needed: when every worker is busy and a poll is due,
// spawn starts one more with it, up to Config.Workers; a worker idle for
// workerIdle ends. So a take-over of thousands of devices polls with as
// many probes at once as Workers allows, while a quiet poller keeps the
// few goroutines its polls need (61 goroutines in all at 10,000 devices
// on a 60 s cycle, against 112 with 64 workers always running).
func (p *Poller) dispatch(ctx context.Context, jobs chan<- job, spawn func(first job)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e, ok := p.sched.next()
		wait := time.Hour
		if ok {
			wait = e.at.Sub(p.cfg.Now())
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-p.sched.kick:
			case <-timer.C:
			}
			continue
		}
		e = p.sched.pop()
		p.mu.Lock()
		t, ok := p.devices[e.name]
		if !ok || t.gen != e.gen || p.busy[e.name] {
			// Stale, or being polled: the worker polling it schedules the
			// current target when it is done; a poll-now, which does not,
			// polls the skipped entry after it.
			if ok && t.gen == e.gen && t.pollingNow {
				t.missed = &e
			}
			p.mu.Unlock()
			continue
		}
		p.busy[e.name] = true
		p.mu.Unlock()
		j := job{t: t, name: e.name, slot: e.slot.Truncate(t.dev.Interval.D()), due: e.at}
		select {
		case jobs <- j:
			continue
		default:
		}
		if p.workers.Load() < int64(p.cfg.Workers) {
			p.workers.Add(1)
			spawn(j)
			continue
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// recordsInFlight is how many polls' records may wait for the spool's
// commit apart from their workers (run): four per worker, so a burst of
// polls fills the group commits instead of waiting for each.
func recordsInFlight(workers int) int { return 4 * workers }

// workerIdle is how long a worker waits for a poll before it ends
// (Poller.workerIdle, which tests shorten).
const workerIdle = 10 * time.Second

// work polls first, then the devices handed to it, and schedules their
// next polls; it ends when ctx is done or after p.workerIdle without a
// poll.
func (p *Poller) work(ctx context.Context, jobs <-chan job, first job) {
	defer p.workers.Add(-1)
	p.run(ctx, first)
	idle := time.NewTimer(p.workerIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			return
		case j := <-jobs:
			p.run(ctx, j)
			idle.Reset(p.workerIdle)
		}
	}
}

// run polls j's device, records what it saw and schedules what comes
// next (finish). The record waits for an fsync that it shares with the
// other polls' (the spool's group commit): on a busy machine that took
// 15 to 50 ms, longer than the probe itself, and held the worker, so a
// take-over of 5,000 devices checked only about 2,500 a second with 64
// workers (issue 23). So the worker records on a goroutine of its own
// and polls the next device meanwhile; the device stays busy until it is
// recorded, so its next poll starts from what this one committed. At
// most recordsInFlight records wait at once; past that the worker
// records itself, which slows the probes down to the disk's pace.
func (p *Poller) run(ctx context.Context, j job) {
	p.noteLag(p.cfg.Now().Sub(j.due), j.t.dev.Interval.D())
	began := time.Now()
	o := p.probe(ctx, j.t, j.slot)
	// The poll's duration is the probe's: the record's wait for the
	// spool's commit is the disk's, not the device's.
	took := time.Since(began)
	done := func() {
		if o != nil {
			p.record(o)
		}
		p.pollSeconds.Observe(took.Seconds())
		p.polls.Add(1)
		p.finish(j)
	}
	if o == nil { // stopped, or the device left: nothing to record
		done()
		return
	}
	select {
	case p.recording <- struct{}{}:
		p.recorders.Go(func() {
			defer func() { <-p.recording }()
			done()
		})
	default:
		done()
	}
}

// finish releases a polled device and schedules what comes next: its next
// slot, or, if it changed or left while it was polled, the new target now
// (or nothing, after forgetting its state).
func (p *Poller) finish(j job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := j.t
	if !t.replaced && !t.deleted {
		delete(p.busy, j.name)
		slot, at := nextRun(j.name, t.dev.Interval.D(), j.slot, p.cfg.Now())
		p.sched.add(j.name, t.gen, at, slot)
		return
	}
	p.retire(j.name, t)
}

// retire ends a target that changed or left while it was polled: it
// forgets a deleted device's state and releases the name. p.mu is held.
func (p *Poller) retire(name string, t *target) {
	if t.snmp != nil {
		t.snmp.Close()
	}
	if t.deleted {
		// Forget outside p.mu (an fsynced write); the name stays busy
		// meanwhile.
		p.mu.Unlock()
		p.forget(name)
		p.mu.Lock()
	}
	p.release(name)
}

type entryHeap []entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// noteLag records how late a poll started. A poll is late when it starts
// more than a tenth of its interval (at least a second) after it was due.
func (p *Poller) noteLag(lag, interval time.Duration) {
	for {
		cur := p.lagMax.Load()
		if int64(lag) <= cur || p.lagMax.CompareAndSwap(cur, int64(lag)) {
			break
		}
	}
	if lag > max(interval/10, time.Second) {
		p.late.Add(1)
	}
}
