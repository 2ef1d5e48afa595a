package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/meshmon/meshmon"
)

// ServeControl serves the control API of s (ControlHandler) on ln until
// ctx is done, then shuts the server down, waiting up to 2 s for requests
// in flight. It returns the server's error, if it failed other than by
// the shutdown.
func ServeControl(ctx context.Context, s *Sim, ln net.Listener) error {
	srv := &http.Server{Handler: ControlHandler(s), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenControl listens for the control API on addr, which must be a
// loopback address and port: the API has no authentication.
func ListenControl(addr string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("--control %q: give a loopback address and port, like 127.0.0.1:0 (the API has no authentication)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--control: %w", err)
	}
	return ln, nil
}

// WriteAgents writes s's agents, their names, addresses and ports: a JSON
// object per line, or a table for people.
func (s *Sim) WriteAgents(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, a := range s.Agents() {
			ap := a.Addr()
			if err := enc.Encode(struct {
				Name    string `json:"name"`
				Address string `json:"address"`
				Port    uint16 `json:"port"`
			}{a.Name(), ap.Addr().String(), ap.Port()}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tPORT")
	for _, a := range s.Agents() {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", a.Name(), a.Addr().Addr(), a.Addr().Port())
	}
	return tw.Flush()
}

// Devices is every agent as an inventory device (Agent.Device).
func (s *Sim) Devices(interval, timeout time.Duration, community string) []meshmon.Device {
	devs := make([]meshmon.Device, 0, len(s.agents))
	for _, a := range s.agents {
		devs = append(devs, a.Device(interval, timeout, community))
	}
	return devs
}
