package bus

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestElector: one candidate wins the lease, the other cannot while it is
// held, renewals keep it, resigning frees it at once for the other, and a
// renewal of a lease that changed hands fails with ErrLeaseLost. A renewal
// the peer stored but whose answer was lost shows up on the watch with the
// holder's own value, and the holder adopts its revision.
func TestElector(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	a := NewElector(js, kv, GroupBucket, GroupLeaderKey("hq"), time.Second)
	b := NewElector(js, kv, GroupBucket, GroupLeaderKey("hq"), time.Second)
	w, err := b.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if won, err := a.Campaign(ctx, []byte("a")); !won || err != nil {
		t.Fatalf("a: won %v, %v", won, err)
	}
	if won, err := b.Campaign(ctx, []byte("b")); won || !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("b while a holds the lease: won %v, %v", won, err)
	}
	before := a.RenewedAt()
	if err := a.Renew(ctx); err != nil || !a.RenewedAt().After(before) {
		t.Fatalf("renew: %v (renewed at %s, before %s)", err, a.RenewedAt(), before)
	}
	// A renewal stored behind a's back, as when its answer is lost: a's
	// next renewal would expect the old revision, unless the watch tells it.
	e, err := kv.Get(ctx, GroupLeaderKey("hq"))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, KVSubject(GroupBucket, GroupLeaderKey("hq")), []byte("a"),
		jetstream.WithExpectLastSequencePerSubject(e.Revision()), jetstream.WithMsgTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	lost, err := kv.Get(ctx, GroupLeaderKey("hq"))
	if err != nil || lost.Revision() != ack.Sequence {
		t.Fatalf("the lost renewal: %v, %v", lost, err)
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("renew before the watch showed the lost answer: %v", err)
	}
	// Again, and this time the watch shows it first.
	e, err = kv.Get(ctx, GroupLeaderKey("hq"))
	if err != nil {
		t.Fatal(err)
	}
	ack, err = js.Publish(ctx, KVSubject(GroupBucket, GroupLeaderKey("hq")), []byte("a"),
		jetstream.WithExpectLastSequencePerSubject(e.Revision()), jetstream.WithMsgTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if lost, err = kv.Get(ctx, GroupLeaderKey("hq")); err != nil || lost.Revision() != ack.Sequence {
		t.Fatalf("the lost renewal: %v, %v", lost, err)
	}
	if !a.Observed(lost) {
		t.Fatal("a does not recognise its own lease")
	}
	if b.Observed(lost) {
		t.Fatal("b takes a's lease for its own")
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("renew after the lost answer: %v", err)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	// b sees the lease go.
	for deadline := time.After(10 * time.Second); ; {
		select {
		case u := <-w.Updates():
			if u == nil || u.Operation() == jetstream.KeyValuePut {
				continue
			}
		case <-deadline:
			t.Fatal("b's watch did not see the resignation")
		}
		break
	}
	if won, err := b.Campaign(ctx, []byte("b")); !won || err != nil {
		t.Fatalf("b after a resigned: won %v, %v", won, err)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a renews b's lease: %v", err)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, GroupLeaderKey("hq")); err != nil || string(e.Value()) != "b" {
		t.Fatalf("a's resignation touched b's lease: %v, %v", e, err)
	}
}

// TestElectorSupplant: a candidate takes the lease from a holder judged
// dead by the revision it saw, not by waiting for the lease to lapse; a
// holder that renewed since keeps it, and the supplanted holder's next
// renewal fails with ErrLeaseLost.
func TestElectorSupplant(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	kv, err := js.KeyValue(ctx, GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	a := NewElector(js, kv, GroupBucket, GroupLeaderKey("hq"), 10*time.Second)
	b := NewElector(js, kv, GroupBucket, GroupLeaderKey("hq"), 10*time.Second)
	if won, err := a.Campaign(ctx, []byte("a")); !won || err != nil {
		t.Fatalf("a: won %v, %v", won, err)
	}
	seen, err := kv.Get(ctx, GroupLeaderKey("hq"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if won, err := b.Supplant(ctx, []byte("b"), seen.Revision()); won || err == nil {
		t.Fatalf("b supplants a lease renewed since it saw it: won %v, %v", won, err)
	}
	if seen, err = kv.Get(ctx, GroupLeaderKey("hq")); err != nil {
		t.Fatal(err)
	}
	if won, err := b.Supplant(ctx, []byte("b"), seen.Revision()); !won || err != nil {
		t.Fatalf("b supplants the lease as it saw it: won %v, %v", won, err)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a renews after b supplanted it: %v", err)
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("b renews the lease it took: %v", err)
	}
	if e, err := kv.Get(ctx, GroupLeaderKey("hq")); err != nil || string(e.Value()) != "b" {
		t.Fatalf("the lease after b took it: %v, %v", e, err)
	}
}
