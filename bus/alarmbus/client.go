package alarmbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
)

// ErrNoProcessor is wrapped by Act when no alarm processor answered: the
// tenant's alarms are not running at central (yet), or its processor is
// moving to another peer for longer than the request's context.
var ErrNoProcessor = errors.New("no alarm processor answered")

// List reads every alarm of the tenant that js reaches, from the alarms
// bucket (a NOC's credential may: it reads through a consumer of its own
// names). A tenant without the bucket has no alarm: central's alarm
// processor makes it at the tenant's first event.
func List(ctx context.Context, js jetstream.JetStream) ([]alarm.Alarm, error) {
	entries, err := bus.ReadBucket(ctx, js, alarm.Bucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]alarm.Alarm, 0, len(entries))
	for _, e := range entries {
		var a alarm.Alarm
		if err := json.Unmarshal(e.Value, &a); err != nil {
			return nil, fmt.Errorf("alarm %s: %w", e.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Get reads one alarm; it wraps alarm.ErrNotFound when there is none.
func Get(ctx context.Context, js jetstream.JetStream, id string) (alarm.Alarm, error) {
	kv, err := js.KeyValue(ctx, alarm.Bucket)
	if err != nil {
		return alarm.Alarm{}, fmt.Errorf("alarms bucket: %w", err)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return alarm.Alarm{}, fmt.Errorf("alarm %s: %w", id, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Alarm{}, err
	}
	var a alarm.Alarm
	return a, json.Unmarshal(e.Value(), &a)
}

// Act asks the tenant's alarm processor to take an action as user (the
// name its credential allows on ActionSubject) and returns the changes it
// made. No answer (a processor moving to another peer) is asked again
// until ctx is done, but for a tenant that has had no event yet, which has
// no processor and no alarm (ErrNotFound at once). The processor's refusal is an error wrapping the
// alarm package's (ErrNotFound, ErrNotOpen, ErrNoChange,
// ErrInvalidAction); a permission violation is the server's.
func Act(ctx context.Context, nc *nats.Conn, user string, a alarm.Action) ([]alarm.Change, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	subj := ActionSubject(user, a.Verb)
	retry := backoff.New(50*time.Millisecond, time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := nc.RequestWithContext(rctx, subj, body)
		cancel()
		if le := nc.LastError(); err != nil && errors.Is(le, nats.ErrPermissionViolation) && strings.Contains(le.Error(), `"`+subj+`"`) {
			return nil, fmt.Errorf("%s %s: %w: this credential may not request %s (a NOC may ack, unack and comment as itself; clear takes an admin's)", a.Verb, a.ID, le, subj)
		}
		if errors.Is(err, nats.ErrNoResponders) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			if noAlarmsYet(ctx, nc) {
				return nil, fmt.Errorf("%s %s: %w: the tenant has had no alarm yet (central keeps a tenant's alarms from its first event)", a.Verb, a.ID, alarm.ErrNotFound)
			}
			if !retry.Wait(ctx) {
				return nil, fmt.Errorf("%s %s: %w (the tenant's alarms run at central)", a.Verb, a.ID, ErrNoProcessor)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", a.Verb, a.ID, err)
		}
		var r ActionReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, fmt.Errorf("%s %s: the answer does not decode: %w", a.Verb, a.ID, err)
		}
		if r.Error != "" {
			return nil, fmt.Errorf("%w", replyError(r))
		}
		return r.Changes, nil
	}
}

// noAlarmsYet reports whether the tenant of nc has no alarms bucket: its
// alarm processor, which makes it, starts at the tenant's first event, so
// no processor answers for a tenant without one.
func noAlarmsYet(ctx context.Context, nc *nats.Conn) bool {
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	_, err = js.KeyValue(ctx, alarm.Bucket)
	return errors.Is(err, jetstream.ErrBucketNotFound)
}

// replyError turns a processor's refusal back into an error that wraps
// the alarm package's sentinel of its code.
func replyError(r ActionReply) error {
	var base error
	switch r.Code {
	case "invalid":
		base = alarm.ErrInvalidAction
	case "not_found":
		base = alarm.ErrNotFound
	case "not_open":
		base = alarm.ErrNotOpen
	case "no_change":
		base = alarm.ErrNoChange
	default:
		return errors.New(r.Error)
	}
	return &refusal{msg: r.Error, base: base}
}

type refusal struct {
	msg  string
	base error
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.base }

// WaitMaintenance waits until the tenant's maintenance bucket is made,
// waking central (bus.WakeCentral), until ctx is done. The bucket is the
// alarm processor's to make (Ensure, when central serves the tenant: from
// its first event, or once woken); a tenant's admin may make no bucket
// (tenancy). A credential that may not wake central is refused at once.
func WaitMaintenance(ctx context.Context, js jetstream.JetStream) error {
	return bus.WaitMade(ctx, js, func(ctx context.Context) error {
		if _, err := js.KeyValue(ctx, alarm.MaintenanceBucket); err != nil {
			return fmt.Errorf("maintenance bucket: %w", err)
		}
		return nil
	})
}

// AddWindow stores a maintenance window (validated); it fails when one of
// that ID exists, and when the maintenance bucket is not made yet
// (WaitMaintenance).
func AddWindow(ctx context.Context, js jetstream.JetStream, w alarm.Window) error {
	if err := w.Validate(); err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, alarm.MaintenanceBucket)
	if le := js.Conn().LastError(); err != nil && errors.Is(le, nats.ErrPermissionViolation) {
		return fmt.Errorf("maintenance window %s: %w", w.ID, le)
	}
	if err != nil {
		return fmt.Errorf("maintenance bucket (made by the alarm processor at central; WaitMaintenance): %w", err)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, w.ID, b); errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("maintenance window %s exists already; remove it first or choose another id", w.ID)
	} else if err != nil {
		return err
	}
	return nil
}

// ListWindows reads the maintenance windows, sorted by ID.
func ListWindows(ctx context.Context, js jetstream.JetStream) ([]alarm.Window, error) {
	entries, err := bus.ReadBucket(ctx, js, alarm.MaintenanceBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // no window yet (AddWindow makes the bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("maintenance bucket: %w", err)
	}
	out := make([]alarm.Window, 0, len(entries))
	for _, e := range entries {
		var w alarm.Window
		if err := json.Unmarshal(e.Value, &w); err != nil {
			return nil, fmt.Errorf("maintenance window %s: %w", e.Key, err)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b alarm.Window) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RemoveWindow removes a maintenance window; it wraps
// alarm.ErrWindowNotFound, naming the window, when there is none of that
// ID (or no window at all yet).
func RemoveWindow(ctx context.Context, js jetstream.JetStream, id string) error {
	notFound := fmt.Errorf("%w: %s (meshmon maintenance list shows the windows)", alarm.ErrWindowNotFound, id)
	kv, err := js.KeyValue(ctx, alarm.MaintenanceBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return notFound // no window was ever added
	}
	if err != nil {
		return fmt.Errorf("maintenance bucket: %w", err)
	}
	if _, err := kv.Get(ctx, id); errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return notFound
	} else if err != nil {
		return err
	}
	return kv.Delete(ctx, id)
}
