package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// TailTenants tails every tenant's EVENTS stream at central (bus.Tail with
// opts), each over a connection of its own from dial as a reader of that
// tenant signed from st for 24 hours: the streams, not the ops account's
// imports, so that a replay and the catch-up after an outage miss nothing.
// fn gets the messages of all tenants one at a time, each with its
// tenant's name. TailTenants returns when every tail has ended, when fn
// fails, or when one tail fails (naming its tenant).
func TailTenants(ctx context.Context, st *tenancy.Store, dial func(tenant string, creds []byte) (*nats.Conn, error), opts bus.TailOptions, fn func(tenant string, m bus.TailMsg) error) error {
	ts, err := st.Tenants()
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return errNoTenants
	}
	type line struct {
		tenant string
		m      bus.TailMsg
	}
	lines := make(chan line, 1024)
	errs := make(chan error, len(ts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range ts {
		creds, err := st.ReaderCreds(t.Name, 24*time.Hour)
		if err != nil {
			return err
		}
		nc, err := dial(t.Name, creds)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		defer nc.Close()
		js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
		if err != nil {
			return err
		}
		wg.Go(func() {
			err := bus.Tail(ctx, js, opts, func(m bus.TailMsg) error {
				select {
				case lines <- line{t.Name, m}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("tenant %s: %w", t.Name, err)
				cancel()
			}
		})
	}
	go func() { wg.Wait(); close(lines) }()
	for l := range lines {
		if err := fn(l.tenant, l.m); err != nil {
			return err
		}
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// WriteTenantEvent writes the event m of tenant to w as 'meshmon events
// tail --all-tenants' prints it: the tenant, then meshmon.FormatEvent's
// line; with asJSON one object a line with the tenant, subject, sequence
// and the event (a string when it is not JSON).
func WriteTenantEvent(w io.Writer, tenant string, m bus.TailMsg, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintf(w, "%-12s %s\n", tenant, meshmon.FormatEvent(m.Subject, m.Data))
		return err
	}
	ev := json.RawMessage(m.Data)
	if !json.Valid(m.Data) {
		ev, _ = json.Marshal(string(m.Data))
	}
	b, err := json.Marshal(map[string]any{"tenant": tenant, "subject": m.Subject, "seq": m.Seq, "event": ev})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
