package bus

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckReady: a peer is not ready before the streams and buckets of its
// role exist (the error names the first one missing), and is ready after
// EnsureStreams (a site) or EnsureCentral (central, domain HubDomain).
func TestCheckReady(t *testing.T) {
	for _, tt := range []struct {
		domain string
		ensure func(t *testing.T, ts *testServer)
	}{
		{"paris", func(t *testing.T, ts *testServer) {
			_, js := connect(t, ts.srv.ClientURL())
			if err := EnsureStreams(testCtx(t), js, DefaultStreamLimits()); err != nil {
				t.Fatal(err)
			}
		}},
		{HubDomain, func(t *testing.T, ts *testServer) {
			_, js := connect(t, ts.srv.ClientURL())
			if err := EnsureCentral(testCtx(t), js, DefaultStreamLimits()); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.domain, func(t *testing.T) {
			opts := serverOpts(t, t.TempDir())
			opts.JetStreamDomain = tt.domain
			ts := startServer(t, opts)
			_, js := connect(t, ts.srv.ClientURL())
			ctx := testCtx(t)
			err := CheckReady(ctx, js)
			if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "stream "+EventsStream) {
				t.Fatalf("before the streams: got %v, want ErrNotReady naming stream %s", err, EventsStream)
			}
			// The streams alone are not enough: the buckets of the role
			// are made after them.
			for _, cfg := range DefaultStreamLimits().streamConfigs() {
				if tt.domain == HubDomain {
					cfg.Subjects = nil
				}
				if _, err := js.CreateStream(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			if err := CheckReady(ctx, js); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "bucket ") {
				t.Fatalf("before the buckets: got %v, want ErrNotReady naming a bucket", err)
			}
			tt.ensure(t, ts)
			if err := CheckReady(ctx, js); err != nil {
				t.Fatalf("after ensure: %v", err)
			}
		})
	}
}
