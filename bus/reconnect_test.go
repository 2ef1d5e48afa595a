package bus

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPublishBatchRetriesAfterReconnect holds a batch in flight (a server
// whose only taker of the subjects never answers), stops that server and
// starts one with the streams on the same port. The batch must fail with
// ErrNotConnected when the connection drops, not when its ack wait runs
// out, and once WaitConnected returns a retry stores every message once.
//
// No wall clock is asserted: AckWait is 10 minutes and the test's context 1
// minute, so a PublishBatch that waited its ack out would fail with the
// test's deadline, not with ErrNotConnected.
func TestPublishBatchRetriesAfterReconnect(t *testing.T) {
	for _, maxAtomic := range []int{DefaultMaxAtomic, 1} {
		t.Run("max_atomic="+strconv.Itoa(maxAtomic), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dir := t.TempDir()
			opts := serverOpts(t, dir)
			opts.JetStream = false
			first := startServer(t, opts)
			port := first.srv.Addr().(*net.TCPAddr).Port

			// The black hole: it takes the batch and never acks it.
			hole, err := nats.Connect(first.srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer hole.Close()
			// taken is closed once the hole holds all the publisher sends
			// before it waits (one atomic batch, or one message at a
			// time): a request still on its way when the server stops
			// could find the hole gone first and be answered "no
			// responders".
			taken := make(chan struct{})
			n, sent := 0, min(maxAtomic, 50)
			if _, err := hole.Subscribe("ev.>", func(*nats.Msg) {
				if n++; n == sent {
					close(taken)
				}
			}); err != nil {
				t.Fatal(err)
			}
			if err := hole.Flush(); err != nil {
				t.Fatal(err)
			}

			nc, js := connect(t, first.srv.ClientURL())
			p := NewPublisher(js)
			p.MaxAtomic = maxAtomic
			p.AckWait = 10 * time.Minute
			msgs := makeMsgs("rc", 50, 64)
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := p.PublishBatch(ctx, msgs)
				done <- result{n, err}
			}()
			select {
			case <-taken:
			case <-ctx.Done():
				t.Fatal("the batch never reached the server")
			}
			first.srv.Shutdown()
			first.srv.WaitForShutdown()

			r := <-done
			if !errors.Is(r.err, ErrNotConnected) || r.n != 0 {
				t.Fatalf("batch in flight when the connection dropped: %d, %v; want 0 and ErrNotConnected", r.n, r.err)
			}

			opts2 := serverOpts(t, dir)
			opts2.Port = port
			second := startServer(t, opts2)
			_, admin := connect(t, second.srv.ClientURL())
			if err := EnsureStreams(ctx, admin, DefaultStreamLimits()); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitConnected(ctx); err != nil {
				t.Fatalf("wait connected: %v", err)
			}
			if !nc.IsConnected() {
				t.Fatal("WaitConnected returned while not connected")
			}
			// The retry, twice: the second is all duplicates.
			for range 2 {
				if n, err := p.PublishBatch(ctx, msgs); err != nil || n != len(msgs) {
					t.Fatalf("retry after reconnect: %d, %v", n, err)
				}
			}
			got := storedIDs(t, ctx, admin, EventsStream)
			want := make([]string, len(msgs))
			for i, m := range msgs {
				want[i] = m.ID
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("stored %v\nwant %v", got, want)
			}
		})
	}
}
