package sim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
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
