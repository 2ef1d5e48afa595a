package alarmbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/internal/meshtest"
	"github.com/meshmon/meshmon/tenancy"
)

// violations collects the permission violations the server reports to a
// connection.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen = append(v.seen, err.Error())
}

func (v *violations) saw(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.seen {
		if strings.Contains(s, "Permissions Violation") && strings.Contains(s, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// TestOperatorModeNOCActions: at a central in operator mode, the peer runs
// each tenant's alarm processor in its account; a NOC user lists the
// alarms and acks and comments as itself, and the server refuses it
// acting as another user, clearing, or writing the alarms bucket or the
// ALARMS stream; another tenant's users reach none of it.
func TestOperatorModeNOCActions(t *testing.T) {
	if testing.Short() {
		t.Skip("an operator-mode central")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := tenancy.Init(filepath.Join(dir, "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := meshtest.OperatorCentral(ctx, dir, "c1", st, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	url := p.ClientURL()
	sysCreds, err := st.SystemCreds(5 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sys := connect(t, url, sysCreds, "", nil)
	conns := map[string]*nats.Conn{}
	v := &violations{}
	accounts := map[string]string{}
	for _, tenant := range []string{"acme", "beta"} {
		tn, err := st.CreateTenant(tenant, tenancy.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		accounts[tenant] = tn.Account
		if err := tenancy.Push(ctx, sys, tn.JWT); err != nil {
			t.Fatal(err)
		}
		admin, err := st.AdminCreds(tenant, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		conns[tenant+"/admin"] = connect(t, url, admin, "", nil)
		ajs, _ := jetstream.New(conns[tenant+"/admin"])
		lim := bus.DefaultStreamLimits()
		lim.EventsMaxBytes, lim.MetricsMaxBytes = 1<<20, 1<<20
		if err := bus.EnsureStreams(ctx, ajs, lim); err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct {
			name string
			role tenancy.Role
			site string
		}{{"noc", tenancy.RoleNOC, ""}, {"ann", tenancy.RoleNOC, ""}} {
			_, creds, err := st.IssueUser(tenant, u.name, u.role, u.site)
			if err != nil {
				t.Fatal(err)
			}
			conns[tenant+"/"+u.name] = connect(t, url, creds, u.name, v.handler)
		}
	}
	nocJS, _ := jetstream.New(conns["acme/noc"])
	// What acme's site's link would deliver (no poller connects at
	// central).
	site, err := p.TenantConn(accounts["acme"], "test-site")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(site.Close)
	pjs, _ := jetstream.New(site)
	ev := meshmon.Event{SpecVersion: "1.0", Time: time.Now().UTC(), Type: meshmon.EventTypePrefix + meshmon.KindNodeDown,
		Data: meshmon.EventData{Tenant: "acme", Site: "par", Device: "r1", Kind: meshmon.KindNodeDown, Check: "icmp", Severity: meshmon.SeverityCritical}}
	b, _ := json.Marshal(ev)
	if _, err := pjs.Publish(ctx, meshmon.EventSubject("par", "r1", meshmon.KindNodeDown), b); err != nil {
		t.Fatal(err)
	}
	id := alarm.ID("par", "r1", "icmp")
	eventually.NoError(t, 60*time.Second, "the NOC lists the alarm the processor opened", func() error {
		as, err := alarmbus.List(ctx, nocJS)
		if err == nil && (len(as) != 1 || as[0].ID != id || as[0].Tenant != "acme") {
			err = errors.New("no alarm yet")
		}
		return err
	})

	// As itself: ack and comment.
	cs, err := alarmbus.Act(ctx, conns["acme/noc"], "noc", alarm.Action{Verb: alarm.VerbAck, ID: id, Text: "on it"})
	if err != nil || cs[0].By != "noc" {
		t.Fatalf("NOC ack: %+v, %v", cs, err)
	}
	if _, err := alarmbus.Act(ctx, conns["acme/noc"], "noc", alarm.Action{Verb: alarm.VerbComment, ID: id, Text: "fibre"}); err != nil {
		t.Fatal(err)
	}
	// Not as another user, not clear, not the bucket or the stream.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }
	for _, subj := range []string{alarmbus.ActionSubject("ann", alarm.VerbUnack), alarmbus.ActionSubject("noc", alarm.VerbClear)} {
		rctx, c := short()
		_, err := conns["acme/noc"].RequestWithContext(rctx, subj, []byte(`{"id":"`+id+`"}`))
		c()
		if err == nil {
			t.Fatalf("NOC request on %s answered", subj)
		}
		eventually.True(t, 10*time.Second, "the server refuses "+subj, func() bool { return v.saw(subj) })
	}
	for _, subj := range []string{bus.KVSubject(alarm.Bucket, id), "alarm." + id, bus.KVSubject(alarm.MaintenanceBucket, "w1")} {
		rctx, c := short()
		_, err := nocJS.Publish(rctx, subj, []byte(`{}`))
		c()
		if err == nil {
			t.Fatalf("NOC publish on %s stored", subj)
		}
		eventually.True(t, 10*time.Second, "the server refuses "+subj, func() bool { return v.saw(subj) })
	}
	a, err := alarmbus.Get(ctx, nocJS, id)
	if err != nil || a.State != alarm.StateOpen || !a.Acked || a.AckedBy != "noc" || len(a.Comments) != 2 {
		t.Fatalf("alarm after the NOC's actions: %+v, %v", a, err)
	}

	// Another tenant's NOC: its own (empty) alarms; acme's alarm is no
	// alarm of its processor.
	betaJS, _ := jetstream.New(conns["beta/noc"])
	eventually.NoError(t, 60*time.Second, "beta's alarms", func() error {
		as, err := alarmbus.List(ctx, betaJS)
		if err == nil && len(as) != 0 {
			t.Fatalf("beta's NOC lists %d alarms", len(as))
		}
		return err
	})
	if _, err := alarmbus.Act(ctx, conns["beta/noc"], "noc", alarm.Action{Verb: alarm.VerbAck, ID: id}); !errors.Is(err, alarm.ErrNotFound) {
		t.Fatalf("beta's NOC acks acme's alarm: %v, want ErrNotFound", err)
	}
	// The admin clears, as itself.
	admin := conns["acme/admin"]
	if _, err := alarmbus.Act(ctx, admin, "noc", alarm.Action{Verb: alarm.VerbClear, ID: id}); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("admin clears as the NOC: %v, want a permissions violation", err)
	}
	cs, err = alarmbus.Act(ctx, admin, "meshmon-cli", alarm.Action{Verb: alarm.VerbClear, ID: id})
	if err != nil || cs[0].Alarm.ClearedBy != "meshmon-cli" {
		t.Fatalf("admin clear: %+v, %v", cs, err)
	}

	// Every action is a change in ALARMS: who (the user its credential
	// proved, not the body's), what, when.
	ajs, _ := jetstream.New(admin)
	s, err := ajs.Stream(ctx, alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var c alarm.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.At.IsZero() {
			t.Errorf("change %s (%s) has no time", c.MsgID(), c.What)
		}
		got = append(got, c.What+" "+c.By)
	}
	if want := []string{"opened ", "acked noc", "commented noc", "cleared meshmon-cli"}; !slices.Equal(got, want) {
		t.Errorf("ALARMS: %q, want %q", got, want)
	}
}

func connect(t *testing.T, url string, creds []byte, user string, onErr nats.ErrHandler) *nats.Conn {
	t.Helper()
	auth, err := tenancy.CredsOption(creds)
	if err != nil {
		t.Fatal(err)
	}
	opts := []nats.Option{auth, nats.MaxReconnects(0)}
	if user != "" {
		opts = append(opts, nats.CustomInboxPrefix(tenancy.InboxPrefix(user)))
	}
	if onErr != nil {
		opts = append(opts, nats.ErrorHandler(onErr))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
