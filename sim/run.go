package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// RunOptions is what Run serves beside the agents.
type RunOptions struct {
	Control     net.Listener  // the control API's listener (ListenControl); none when nil
	FaultsEvery time.Duration // inject a random fault this often (0: never)
	Out         io.Writer     // where the control URL, each fault and the closing count are printed
	Log         *slog.Logger
}

// Run serves the control API and injects random faults, as o says, until
// ctx is done; it returns once both have stopped ('meshmon sim').
func (s *Sim) Run(ctx context.Context, o RunOptions) {
	var wg sync.WaitGroup
	if o.Control != nil {
		fmt.Fprintf(o.Out, "control API: http://%s/agents\n", o.Control.Addr())
		wg.Go(func() {
			if err := ServeControl(ctx, s, o.Control); err != nil {
				o.Log.Error("sim: control API", "err", err)
			}
		})
	}
	if o.FaultsEvery > 0 {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x73696d))
		wg.Go(func() {
			s.RunFaults(ctx, o.FaultsEvery, rng, func(did string, err error) {
				if err != nil {
					o.Log.Warn("sim: fault", "err", err)
					return
				}
				fmt.Fprintf(o.Out, "%s fault: %s\n", time.Now().Format("15:04:05"), did)
			})
		})
	}
	<-ctx.Done()
	fmt.Fprintf(o.Out, "stopping; %d requests answered\n", s.Answered())
	wg.Wait()
}
