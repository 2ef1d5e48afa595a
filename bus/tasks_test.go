package bus

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

// siteView is a poller's view of its site for the task server: it owns
// the devices in owned; walks run until their ctx ends.
type siteView struct {
	name    string
	owned   map[string]bool
	owners  map[string]string // the site's devices and their owners
	ran     atomic.Int32
	walking chan struct{} // a walk started
	stopped atomic.Int32  // walks whose ctx ended
	stopWhy atomic.Value

	mu      sync.Mutex
	ranBy   []string            // the requesters of the tasks run
	refused map[string][]string // task id: the requester and the reason of each refusal
}

func (v *siteView) Owns(d string) bool { return v.owned[d] }
func (v *siteView) Whois(d string) (string, bool) {
	o, ok := v.owners[d]
	return o, ok
}
func (v *siteView) Refused(req meshmon.TaskRequest, reason error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.refused == nil {
		v.refused = map[string][]string{}
	}
	v.refused[req.ID] = append(v.refused[req.ID], req.Verb+" by "+req.By+": "+reason.Error())
}

func (v *siteView) refusals(id string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refused[id]
}

func (v *siteView) Task(ctx context.Context, req meshmon.TaskRequest, send func(meshmon.TaskReply) error) error {
	v.ran.Add(1)
	v.mu.Lock()
	v.ranBy = append(v.ranBy, req.By)
	v.mu.Unlock()
	if req.Verb == meshmon.TaskWalk {
		v.walking <- struct{}{}
		<-ctx.Done()
		v.stopWhy.Store(fmt.Errorf("stopped: %w", ctx.Err())) // one concrete type
		v.stopped.Add(1)
		return ctx.Err()
	}
	return send(meshmon.TaskReply{Varbinds: []meshmon.Varbind{{OID: "1.3", Value: v.name}}})
}

func code(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return meshmon.TaskCodeTimeout
	case errors.Is(err, context.Canceled):
		return meshmon.TaskCodeCancelled
	}
	return meshmon.TaskCodeFailed
}

// TestTaskRouting: the owner answers a device task and the other poller
// stays silent; the errors name an unknown device, a device nobody owns
// and a site nobody answers for; a task's timeout and its requester's
// cancel stop it at the site.
// waitServing waits until n task servers of site hq have subscribed:
// one answering says nothing of the others, and a step that wants every
// poller's answer (or that one did not run a task) fails under load
// without it. Serve subscribes to whois last, and a connection's
// subscriptions reach the server in order.
func waitServing(t *testing.T, ts *testServer, n int) {
	t.Helper()
	eventually.True(t, 10*time.Second, fmt.Sprintf("%d pollers subscribed to the site's tasks", n), func() bool {
		return ts.srv.GlobalAccount().Interest(meshmon.TaskSubject("hq", "ann", meshmon.TaskWhois)) == n
	})
}

func TestTaskRouting(t *testing.T) {
	ts, nc, _ := runJS(t)
	ctx := testCtx(t)
	owners := map[string]string{"sw1": "p1", "orphan": ""}
	p1 := &siteView{name: "p1", owned: map[string]bool{"sw1": true}, owners: owners, walking: make(chan struct{}, 2)}
	p2 := &siteView{name: "p2", owned: map[string]bool{}, owners: owners, walking: make(chan struct{}, 2)}
	for _, v := range []*siteView{p1, p2} {
		pnc, _ := connect(t, ts.srv.ClientURL())
		srv := NewTaskServer(pnc, code, nil)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(sctx, "hq", v.name, v) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	waitServing(t, ts, 2)
	req := func(verb, device string, timeout time.Duration) meshmon.TaskRequest {
		return meshmon.TaskRequest{ID: nuid.Next(), Verb: verb, Site: "hq", By: "ann", Device: device, OIDs: []string{"1.3"}, Timeout: meshmon.Duration(timeout)}
	}
	var replies []meshmon.TaskReply
	eventually.NoError(t, 10*time.Second, "poll-now of sw1", func() error {
		replies = nil
		return RunTask(ctx, nc, req(meshmon.TaskPollNow, "sw1", 5*time.Second), TaskOptions{Reach: time.Second,
			OnReply: func(r meshmon.TaskReply) { replies = append(replies, r) }})
	})
	if len(replies) != 3 || replies[1].Poller != "p1" || replies[1].Varbinds[0].Value != "p1" || !replies[2].Done {
		t.Fatalf("poll-now of sw1: %+v", replies)
	}
	if p2.ran.Load() != 0 {
		t.Fatal("p2, which does not own sw1, ran its task")
	}

	for _, c := range []struct {
		device string
		want   error
	}{{"nope", ErrTaskDevice}, {"orphan", ErrNoOwner}} {
		r := req(meshmon.TaskPollNow, c.device, 5*time.Second)
		if err := RunTask(ctx, nc, r, TaskOptions{Reach: time.Second}); !errors.Is(err, c.want) {
			t.Errorf("poll-now of %s: %v, want %v", c.device, err, c.want)
		}
		// The whois answerer records the refusal, as the poll-now's.
		if got := append(p1.refusals(r.ID), p2.refusals(r.ID)...); len(got) != 1 || !strings.HasPrefix(got[0], "poll-now by ann: ") {
			t.Errorf("poll-now of %s: refusals recorded %q, want one of poll-now by ann", c.device, got)
		}
	}
	offline := req(meshmon.TaskPing, "", 5*time.Second)
	offline.Site, offline.Address = "lyon", "192.0.2.1"
	if err := RunTask(ctx, nc, offline, TaskOptions{Reach: 500 * time.Millisecond}); !errors.Is(err, ErrSiteOffline) || err.Error() != "site offline: site lyon is offline (no reply in 500ms)" {
		t.Errorf("ping at a site nobody serves: %v", err)
	}

	// The task's timeout: the site stops it and says so.
	if err := RunTask(ctx, nc, req(meshmon.TaskWalk, "sw1", time.Second), TaskOptions{Reach: time.Second}); !errors.Is(err, ErrTaskTimeout) {
		t.Errorf("a walk past its timeout: %v, want %v", err, ErrTaskTimeout)
	}
	eventually.True(t, 10*time.Second, "the timed-out walk to stop at the site", func() bool { return p1.stopped.Load() == 1 })
	if why, _ := p1.stopWhy.Load().(error); !errors.Is(why, context.DeadlineExceeded) {
		t.Errorf("the walk stopped with %v, want its deadline", why)
	}
	// The requester gives up: the site stops the task.
	cctx, cancel := context.WithCancel(ctx)
	<-p1.walking // the timed-out one
	go func() { <-p1.walking; cancel() }()
	if err := RunTask(cctx, nc, req(meshmon.TaskWalk, "sw1", time.Minute), TaskOptions{Reach: 5 * time.Second}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled walk: %v", err)
	}
	eventually.True(t, 10*time.Second, "the cancelled walk to stop at the site", func() bool { return p1.stopped.Load() == 2 })
	if why, _ := p1.stopWhy.Load().(error); !errors.Is(why, context.Canceled) {
		t.Errorf("the walk stopped with %v, want a cancel", why)
	}
}

// TestTaskRequester: the site takes the requester from the subject, not
// from the request; it refuses, answers and records bad input, a
// request for another site or verb than its subject's, and a device task
// of a device it lacks (every poller records it, under one task id); it
// answers no dotted id; a cancel by another user stops nothing.
func TestTaskRequester(t *testing.T) {
	ts, nc, _ := runJS(t)
	ctx := testCtx(t)
	owners := map[string]string{"sw1": "p1"}
	p1 := &siteView{name: "p1", owned: map[string]bool{"sw1": true}, owners: owners, walking: make(chan struct{}, 2)}
	p2 := &siteView{name: "p2", owned: map[string]bool{}, owners: owners, walking: make(chan struct{}, 2)}
	for _, v := range []*siteView{p1, p2} {
		pnc, _ := connect(t, ts.srv.ClientURL())
		srv := NewTaskServer(pnc, code, nil)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(sctx, "hq", v.name, v) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	eventually.NoError(t, 10*time.Second, "the site to answer", func() error {
		r := meshmon.TaskRequest{ID: nuid.Next(), Verb: meshmon.TaskPing, Site: "hq", By: "ann", Address: "192.0.2.1", Timeout: meshmon.Duration(5 * time.Second)}
		return RunTask(ctx, nc, r, TaskOptions{Reach: time.Second})
	})
	waitServing(t, ts, 2)

	// raw sends body on subject and returns the final reply.
	raw := func(subject, body string) meshmon.TaskReply {
		t.Helper()
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(body), &id)
		if id.ID == "" {
			sum := sha256.Sum256([]byte(body))
			id.ID = fmt.Sprintf("invalid-%x", sum[:8])
		}
		sub, err := nc.SubscribeSync(meshmon.TaskReplySubject("hq", id.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.Publish(subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("%s %s: %v", subject, body, err)
			}
			var r meshmon.TaskReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.Done {
				return r
			}
		}
	}
	// A body that says by mallory, on ann's subject: ann ran it.
	r := raw(meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `{"id":"spoof1","verb":"ping","site":"hq","by":"mallory","address":"192.0.2.1"}`)
	if r.Error != "" {
		t.Fatalf("ping by ann: %+v", r)
	}
	p1.mu.Lock()
	by := append([]string(nil), p1.ranBy...)
	p1.mu.Unlock()
	p2.mu.Lock()
	by = append(by, p2.ranBy...)
	p2.mu.Unlock()
	for _, b := range by {
		if b != "ann" {
			t.Errorf("a task ran by %q; every request came on ann's subject", b)
		}
	}

	for _, c := range []struct {
		subject, body, want string
	}{
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskDiscover), `{"id":"big","verb":"discover","site":"hq","cidr":"10.0.0.0/16"}`, "pass --allow-large"},
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `{"id":"bad1","verb":"ping","site":"hq","address":""}`, "address is empty"},
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `{"id":"other","verb":"ping","site":"lyon","address":"192.0.2.1"}`, `site "lyon": the request came for site hq`},
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `{"id":"verb1","verb":"discover","site":"hq","cidr":"192.0.2.0/24"}`, `verb "discover": the request came on the subject of ping`},
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `not json`, "not a task request"},
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPollNow), `{"id":"nodev","verb":"poll-now","site":"hq","device":"nope"}`, "site hq has no device nope"},
	} {
		r := raw(c.subject, c.body)
		if r.Code != meshmon.TaskCodeRefused || !strings.Contains(r.Error, c.want) {
			t.Errorf("%s: reply %+v, want refused: %s", c.body, r, c.want)
		}
		id := r.ID
		eventually.True(t, 5*time.Second, "the refusal of "+id+" recorded", func() bool {
			return len(p1.refusals(id))+len(p2.refusals(id)) > 0
		})
		for _, got := range append(p1.refusals(id), p2.refusals(id)...) {
			if !strings.Contains(got, " by ann: ") || !strings.Contains(got, c.want) {
				t.Errorf("%s: refusal recorded as %q", c.body, got)
			}
		}
	}

	// A dotted id is recorded but not answered: its replies' subject
	// would be another requester's (here an ops user's).
	all, err := nc.SubscribeSync("ctl.hq.reply.>")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ops.olga.x", "dotted-after"} {
		if err := nc.Publish(meshmon.TaskSubject("hq", "ann", meshmon.TaskPollNow), []byte(`{"id":"`+id+`","verb":"poll-now","site":"hq","device":"nope"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Both pollers take poll-now in order: once each answered the second,
	// each has dealt with the first.
	answered := map[string]bool{}
	for len(answered) < 2 {
		m, err := all.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("the replies to dotted-after: %v (answered by %v)", err, answered)
		}
		if strings.HasPrefix(m.Subject, "ctl.hq.reply.ops.") {
			t.Fatalf("a reply on %s", m.Subject)
		}
		if m.Subject != meshmon.TaskReplySubject("hq", "dotted-after") {
			continue // a late reply of an earlier request
		}
		var r meshmon.TaskReply
		_ = json.Unmarshal(m.Data, &r)
		answered[r.Poller] = true
	}
	_ = all.Unsubscribe()
	eventually.True(t, 5*time.Second, "the dotted id's refusal recorded", func() bool {
		return len(p1.refusals("ops.olga.x")) == 1 && len(p2.refusals("ops.olga.x")) == 1
	})

	// A cancel by bob does not stop ann's walk; ann's does.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	walk := meshmon.TaskRequest{ID: nuid.Next(), Verb: meshmon.TaskWalk, Site: "hq", By: "ann", Device: "sw1", OIDs: []string{"1.3"}, Timeout: meshmon.Duration(time.Minute)}
	done := make(chan error, 1)
	go func() { done <- RunTask(wctx, nc, walk, TaskOptions{Reach: 5 * time.Second}) }()
	<-p1.walking
	b, _ := json.Marshal(meshmon.TaskRequest{ID: walk.ID, Verb: meshmon.TaskCancel, Site: "hq"})
	if err := nc.Publish(meshmon.TaskSubject("hq", "bob", meshmon.TaskCancel), b); err != nil {
		t.Fatal(err)
	}
	// (A round trip after it: a cancel honoured would most likely have
	// stopped the walk by then.)
	raw(meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), `{"id":"after-cancel2","verb":"ping","site":"hq","address":"192.0.2.1"}`)
	if p1.stopped.Load() != 0 {
		t.Fatal("bob's cancel stopped ann's walk")
	}
	wcancel() // RunTask sends ann's cancel
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ann's walk: %v", err)
	}
	eventually.True(t, 10*time.Second, "ann's cancel to stop her walk", func() bool { return p1.stopped.Load() == 1 })
}
