package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/meshtest"
)

// startSites starts the bench's sites s1..sN on leaf links to mesh's
// central, in this process or, with bc.SiteProcesses, each in a process
// of its own, and returns a JetStream context on each. close stops what
// it started.
func startSites(ctx context.Context, bc MeshConfig, dir string, mesh *meshtest.Mesh) (_ []jetstream.JetStream, closeAll func(), err error) {
	if !bc.SiteProcesses {
		for i := range bc.Sites {
			if _, _, err := mesh.AddSite(ctx, fmt.Sprintf("s%d", i+1)); err != nil {
				return nil, nil, err
			}
		}
		return mesh.SiteJS, func() {}, nil
	}
	self := bc.Meshmon
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return nil, nil, err
		}
	}
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	var out []jetstream.JetStream
	for i := range bc.Sites {
		site := fmt.Sprintf("s%d", i+1)
		js, stop, err := siteProcess(ctx, self, dir, site, mesh)
		if err != nil {
			return nil, nil, fmt.Errorf("site %s: %w", site, err)
		}
		closers = append(closers, stop)
		out = append(out, js)
	}
	return out, closeAll, nil
}

// siteProcess adds site at mesh's central and runs its peer as 'meshmon
// peer run' in a child process, joining with a token in a file (0600: it
// holds the leaf credential).
func siteProcess(ctx context.Context, self, dir, site string, mesh *meshtest.Mesh) (jetstream.JetStream, func(), error) {
	if err := bus.AddSite(ctx, mesh.CentralJS, site, time.Now()); err != nil {
		return nil, nil, err
	}
	tokenFile := filepath.Join(dir, site+".join")
	if err := os.WriteFile(tokenFile, []byte(mesh.JoinToken(site)+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	url, stop, err := child(ctx, self, `peer \S+ ready on (\S+)`, "--log-level", "error", "peer", "run", "--insecure",
		"--name", "bench-"+site, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, site), "--join-file", tokenFile)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, nats.Name("meshmon-bench-mesh"))
	if err != nil {
		stop()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		stop()
		return nil, nil, err
	}
	// The peer says it is ready before its streams may answer.
	if err := waitStream(ctx, js, time.Minute); err != nil {
		nc.Close()
		stop()
		return nil, nil, err
	}
	return js, func() { nc.Close(); stop() }, nil
}

// waitStream waits up to within for js's EVENTS stream to answer.
func waitStream(ctx context.Context, js jetstream.JetStream, within time.Duration) error {
	for deadline := time.Now().Add(within); ; {
		_, err := js.Stream(ctx, bus.EventsStream)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("its %s stream does not answer after %s: %w", bus.EventsStream, within, err)
		}
		if err := waitCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}
