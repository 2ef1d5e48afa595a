package bus

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDropConsumer: the consumer is gone when dropConsumer returns, and a
// user the server refuses the removal is told so at once, not held up
// until dropWait.
func TestDropConsumer(t *testing.T) {
	opts := serverOpts(t, t.TempDir())
	opts.Users = []*server.User{
		{Username: "rw", Password: "rw-pw"},
		{Username: "ro", Password: "ro-pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Deny: []string{"$JS.API.CONSUMER.DELETE.>"}}}},
	}
	ts := startServer(t, opts)
	ctx := testCtx(t)
	conn := func(user string) jetstream.JetStream {
		nc, err := nats.Connect(ts.srv.ClientURL(), nats.UserInfo(user, user+"-pw"),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refusal is expected
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	rw, ro := conn("rw"), conn("ro")
	if err := EnsureStreams(ctx, rw, DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		t.Helper()
		s, err := rw.Stream(ctx, EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Consumers
	}
	for _, tc := range []struct {
		user string
		js   jetstream.JetStream
		left int
	}{{"rw", rw, 0}, {"ro", ro, 1}} {
		c, err := tc.js.CreateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		err = dropConsumer(ctx, tc.js, EventsStream, c.CachedInfo().Name)
		// A refusal is seen as one, not waited out until dropWait.
		if refused := errors.Is(err, nats.ErrPermissionViolation); refused != (tc.left > 0) || (!refused && err != nil) {
			t.Errorf("%s: dropConsumer: %v", tc.user, err)
		}
		// Read at once: a removal asked for without waiting would
		// still be in flight here, or lost with the connection.
		if n := consumers(); n != tc.left {
			t.Errorf("%s: %d consumers on %s after dropConsumer, want %d", tc.user, n, EventsStream, tc.left)
		}
		if tc.left > 0 {
			if err := rw.DeleteConsumer(ctx, EventsStream, c.CachedInfo().Name); err != nil {
				t.Fatal(err)
			}
		}
	}
}
