package bus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestJoinWait: JoinWait answers once enough central peers published
// their leaf URL, and says how many did when its context ends first.
func TestJoinWait(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := JoinWait(short, js, 1)
	cancel()
	if err == nil {
		t.Fatal("JoinWait on a peer that is not central passed")
	}
	if err := EnsureCentral(ctx, js, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	if err := PublishJoin(ctx, js, "c1", JoinInfo{Central: []string{"nats-leaf://c1:7422"}}); err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	info, err := JoinWait(short, js, 2)
	cancel()
	var few *TooFewCentralError
	if !errors.As(err, &few) || few.Have != 1 || few.Want != 2 || len(info.Central) != 1 {
		t.Fatalf("one of two central peers: %v, %v", info, err)
	}
	if err.Error() != "only 1 of 2 central peers have published their leaf URL" {
		t.Fatalf("error %q", err)
	}
	go func() { _ = PublishJoin(ctx, js, "c2", JoinInfo{Central: []string{"nats-leaf://c2:7422"}}) }()
	if info, err = JoinWait(ctx, js, 2); err != nil || len(info.Central) != 2 {
		t.Fatalf("two of two central peers: %v, %v", info, err)
	}
}
