package bus

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/eventually"
)

func TestSubjects(t *testing.T) {
	tests := []struct{ got, want string }{
		{meshmon.EventSubject("hq", "sw1", "node_down"), "ev.hq.sw1.node_down"},
		{meshmon.MetricSubject("hq", "sw1", "icmp"), "mx.hq.sw1.icmp"},
		{EventFilter("", "", ""), "ev.*.*.*"},
		{EventFilter("hq", "", ""), "ev.hq.*.*"},
		{EventFilter("hq", "sw1", ""), "ev.hq.sw1.*"},
		{EventFilter("", "", "if_down"), "ev.*.*.if_down"},
		{MetricFilter("hq", "", "icmp"), "mx.hq.*.icmp"},
		{StreamForSubject("ev.a.b.c"), EventsStream},
		{StreamForSubject("mx.a.b.c"), MetricsStream},
		{StreamForSubject("ctl.a.b"), ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestStreamLimitsValidate(t *testing.T) {
	if err := DefaultStreamLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*StreamLimits)
		field string
	}{
		{"negative age", func(l *StreamLimits) { l.EventsMaxAge = -1 }, "events max age"},
		{"short age", func(l *StreamLimits) { l.MetricsMaxAge = time.Second }, "metrics max age"},
		{"no dedup", func(l *StreamLimits) { l.EventsDuplicates = 0 }, "events duplicates"},
		{"dedup beyond age", func(l *StreamLimits) { l.MetricsMaxAge = time.Hour; l.MetricsDuplicates = 2 * time.Hour }, "metrics duplicates"},
		{"tiny bytes", func(l *StreamLimits) { l.EventsMaxBytes = 10 }, "events max bytes"},
		{"replicas", func(l *StreamLimits) { l.Replicas = 2 }, "replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultStreamLimits()
			tt.edit(&l)
			err := l.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want an ErrInvalidConfig naming %q", err, tt.field)
			}
		})
	}
}

// writeUserFiles writes a user nkey seed file and a .creds file (a user JWT
// signed by a fresh account) and returns their paths.
func writeUserFiles(t *testing.T) (seedFile, credsFile string) {
	t.Helper()
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	pub, _ := user.PublicKey()
	acct, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.NewUserClaims(pub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	seedFile, credsFile = filepath.Join(dir, "user.nk"), filepath.Join(dir, "user.creds")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return seedFile, credsFile
}

func TestConnConfigValidate(t *testing.T) {
	seedFile, credsFile := writeUserFiles(t)
	tests := []struct {
		name string
		cfg  ConnConfig
		ok   bool
	}{
		{"empty", ConnConfig{}, true},
		{"user password", ConnConfig{URL: "nats://h:4222", User: "u", Password: "p"}, true},
		{"nkey", ConnConfig{NKeySeedFile: seedFile}, true},
		{"creds", ConnConfig{CredsFile: credsFile}, true},
		{"creds is a seed", ConnConfig{CredsFile: seedFile}, false},
		{"password and creds", ConnConfig{User: "u", Password: "p", CredsFile: "x"}, false},
		{"nkey and creds", ConnConfig{NKeySeedFile: "a", CredsFile: "x"}, false},
		{"user without password", ConnConfig{User: "u"}, false},
		{"password without user", ConnConfig{Password: "p"}, false},
		{"bad url", ConnConfig{URL: "::"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConnectWaitNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = ConnectWait(ctx, ConnConfig{URL: "nats://" + addr})
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("got %v, want ErrNoServer", err)
	}
	if want := "connect nats://" + addr + ": no server answering (dial tcp " + addr + ": connect: connection refused)"; err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
}

func TestConnectWaitAuth(t *testing.T) {
	opts := serverOpts(t, t.TempDir())
	opts.Username, opts.Password = "u", "right"
	ts := startServer(t, opts)
	ctx := testCtx(t)
	if _, err := ConnectWait(ctx, ConnConfig{URL: ts.srv.ClientURL(), User: "u", Password: "wrong"}); err == nil || errors.Is(err, ErrNoServer) {
		t.Fatalf("wrong password: got %v, want an authorization error", err)
	}
	nc, err := ConnectWait(ctx, ConnConfig{URL: ts.srv.ClientURL(), User: "u", Password: "right"})
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	nc.Close()
}

func TestEnsureStreams(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	lim := DefaultStreamLimits()
	lim.EventsMaxAge = 48 * time.Hour
	lim.MetricsDuplicates = time.Minute
	if err := EnsureStreams(ctx, js, lim); err != nil {
		t.Fatalf("update: %v", err)
	}
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.MaxAge != 48*time.Hour || c.Storage != jetstream.FileStorage || c.Duplicates != 10*time.Minute || !c.AllowAtomicPublish {
		t.Fatalf("events config: %+v", c)
	}
	s, err = js.Stream(ctx, MetricsStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.Duplicates != time.Minute || c.MaxBytes != 10<<30 {
		t.Fatalf("metrics config: %+v", c)
	}
	for _, b := range []string{DevicesBucket, PollersBucket} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
	}
	st, err := StreamStatus(ctx, js)
	if err != nil || len(st) != 2 || st[0].Name != EventsStream || st[1].Name != MetricsStream {
		t.Fatalf("status: %+v, %v", st, err)
	}
}

func testDevice(name string) meshmon.Device {
	return meshmon.Device{
		Name:     name,
		Address:  "192.0.2.1",
		Checks:   []string{meshmon.CheckICMP},
		Interval: meshmon.Duration(30 * time.Second),
	}
}

func TestInventory(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	inv, err := OpenInventory(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	list, err := inv.List(ctx)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("empty list: %v, %v", list, err)
	}
	if _, err := inv.Put(ctx, meshmon.Device{Name: "Bad"}); !errors.Is(err, meshmon.ErrInvalidDevice) {
		t.Fatalf("invalid device: %v", err)
	}
	if _, err := inv.Create(ctx, testDevice("sw2")); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Create(ctx, testDevice("sw2")); !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("second create: %v", err)
	}
	d := testDevice("sw1")
	rev, err := inv.Put(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := inv.Get(ctx, "sw1")
	if err != nil || got.Revision != rev || got.Address != d.Address {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if _, err := inv.Get(ctx, "nope"); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	list, err = inv.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "sw1" || list[1].Name != "sw2" {
		t.Fatalf("list: %+v, %v", list, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := inv.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() meshmon.InventoryChange {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			return c
		case <-ctx.Done():
			t.Fatal("no change")
		}
		return meshmon.InventoryChange{}
	}
	seen := map[string]bool{}
	for c := next(); !c.Synced; c = next() {
		if !c.Initial {
			t.Fatalf("replayed change not initial: %+v", c)
		}
		seen[c.Name] = true
	}
	if !seen["sw1"] || !seen["sw2"] {
		t.Fatalf("initial: %v", seen)
	}
	if _, err := inv.Put(ctx, testDevice("sw3")); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Name != "sw3" || c.Initial || c.Deleted || c.Device.Name != "sw3" {
		t.Fatalf("add: %+v", c)
	}
	d.Address = "192.0.2.9"
	if _, err := inv.Put(ctx, d); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Name != "sw1" || c.Device.Address != "192.0.2.9" {
		t.Fatalf("change: %+v", c)
	}
	if err := inv.Delete(ctx, "sw2"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Name != "sw2" || !c.Deleted {
		t.Fatalf("delete: %+v", c)
	}
	if err := inv.Delete(ctx, "sw2"); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	cancel()
	for range ch { // closes once ctx is done
	}
}

func TestRegistryExpiry(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	reg, err := OpenRegistry(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	reg.TTL = time.Second
	if err := reg.Heartbeat(ctx, meshmon.PollerInfo{Name: "p1", Site: "hq", Devices: 3}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Heartbeat(ctx, meshmon.PollerInfo{Name: "p1", Site: "hq", Devices: 4}); err != nil {
		t.Fatal(err)
	}
	list, err := reg.List(ctx)
	if err != nil || len(list) != 1 || list[0].Devices != 4 || list[0].LastSeen.IsZero() {
		t.Fatalf("list: %+v, %v", list, err)
	}
	eventually.NoError(t, 10*time.Second, "the registry listing", func() error {
		list, err := reg.List(ctx)
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return errors.New("poller still listed")
		}
		return nil
	})
	if err := reg.Heartbeat(ctx, meshmon.PollerInfo{Name: "bad.name"}); !errors.Is(err, meshmon.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestTail(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	p := NewPublisher(js)
	first := makeMsgs("a", 5, 16)
	if _, err := p.PublishBatch(ctx, first); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 5*time.Second, "a later stored time than message 5", func() error { // a later stored time than message 5
		if !time.Now().After(m.Time) {
			return errors.New("clock has not moved")
		}
		return nil
	})
	since := time.Now()
	second := makeMsgs("b", 5, 16)
	if _, err := p.PublishBatch(ctx, second); err != nil {
		t.Fatal(err)
	}

	collect := func(o TailOptions) []TailMsg {
		t.Helper()
		var got []TailMsg
		if err := Tail(ctx, js, o, func(m TailMsg) error { got = append(got, m); return nil }); err != nil {
			t.Fatalf("tail %+v: %v", o, err)
		}
		return got
	}
	if got := collect(TailOptions{Since: since}); len(got) != 5 || got[0].Seq != 6 || got[0].Header.Get(jetstream.MsgIDHeader) != "b-0" {
		t.Fatalf("since: %d messages, first %+v", len(got), got)
	}
	if got := collect(TailOptions{StartSeq: 1}); len(got) != 10 || got[9].Seq != 10 {
		t.Fatalf("from 1: %d messages", len(got))
	}
	if got := collect(TailOptions{StartSeq: 1, Subject: EventFilter("hq", "dev1", "")}); len(got) != 2 {
		t.Fatalf("filtered: %d messages", len(got))
	}
	if got := collect(TailOptions{StartSeq: 1, Subject: EventFilter("other", "", "")}); len(got) != 0 {
		t.Fatalf("nothing matches: %d messages", len(got))
	}
	if got := collect(TailOptions{}); len(got) != 0 {
		t.Fatalf("new only, not live: %d messages", len(got))
	}

	// Live: new messages arrive; ctx ends it cleanly.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan TailMsg, 100)
	done := make(chan error, 1)
	go func() {
		done <- Tail(lctx, js, TailOptions{Live: true, Subject: EventFilter("", "", "")}, func(m TailMsg) error {
			got <- m
			return nil
		})
	}()
	eventually.NoError(t, 10*time.Second, "a live message delivered", func() error {
		if _, err := p.PublishBatch(ctx, makeMsgs("live-"+time.Now().String(), 1, 8)); err != nil {
			return err
		}
		select {
		case <-got:
			return nil
		default:
			return errors.New("no live message yet")
		}
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("live tail: %v", err)
	}
}

func TestConnectErrorsSayWhy(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("this is not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	tests := []struct {
		name string
		cfg  ConnConfig
		want error
		text string
	}{
		{"missing creds", ConnConfig{CredsFile: filepath.Join(dir, "nope.creds")}, ErrInvalidConfig, "creds file " + filepath.Join(dir, "nope.creds") + ": no such file or directory"},
		{"garbage creds", ConnConfig{CredsFile: garbage}, ErrInvalidConfig, "holds no user JWT"},
		{"garbage seed", ConnConfig{NKeySeedFile: garbage}, ErrInvalidConfig, "holds no nkey seed"},
		{"bogus scheme", ConnConfig{URL: "bogus://127.0.0.1:4222"}, ErrInvalidConfig, `scheme "bogus"`},
		{"bad port", ConnConfig{URL: "nats://127.0.0.1:99999"}, ErrInvalidConfig, "port"},
		{"unresolvable", ConnConfig{URL: "nats://no-such-host.invalid:4222"}, ErrUnresolvable, `host "no-such-host.invalid"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConnectWait(ctx, tc.cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not say %q", err, tc.text)
			}
		})
	}
	// No time at all is a usage error, not a dead server.
	done, cancel := context.WithTimeout(ctx, 0)
	defer cancel()
	if _, err := ConnectWait(done, ConnConfig{URL: "nats://127.0.0.1:4222"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero timeout: got %v, want ErrInvalidConfig", err)
	}
}

func TestPublishWhileNeverConnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	nc, err := Connect(ConnConfig{URL: "nats://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []meshmon.Message{{Stream: meshmon.StreamEvents, Site: "hq", Device: "sw1", Kind: "node_down", ID: "1", Data: []byte("x")}}
	_, err = NewPublisher(js).PublishBatch(testCtx(t), msgs)
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("got %v, want ErrNotConnected", err)
	}
}

func TestRegistryClaim(t *testing.T) {
	_, _, js := runJS(t)
	ctx := testCtx(t)
	reg, err := OpenRegistry(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	reg.TTL = time.Second
	a := meshmon.PollerInfo{Name: "p1", Site: "hq", Instance: "aaaa"}
	if err := reg.Claim(ctx, a); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	// The same instance (a restart on the same storage file) gets it back.
	if err := reg.Claim(ctx, a); err != nil {
		t.Fatalf("claim again by the same instance: %v", err)
	}
	b := meshmon.PollerInfo{Name: "p1", Site: "hq", Instance: "bbbb"}
	if err := reg.Claim(ctx, b); !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("claim by another instance: got %v, want ErrNameTaken naming aaaa", err)
	}
	// Once the holder's heartbeat expires the name is free.
	eventually.NoError(t, 10*time.Second, "the claim", func() error { return reg.Claim(ctx, b) })
}

func TestCheckSite(t *testing.T) {
	opts := serverOpts(t, t.TempDir())
	opts.JetStreamDomain = "paris"
	ts := startServer(t, opts)
	_, js := connect(t, ts.srv.ClientURL())
	ctx := testCtx(t)
	if err := CheckSite(ctx, js, "paris"); err != nil {
		t.Fatalf("right site: %v", err)
	}
	err := CheckSite(ctx, js, "lyon")
	if !errors.Is(err, ErrWrongSite) || !strings.Contains(err.Error(), `"paris"`) {
		t.Fatalf("wrong site: got %v, want ErrWrongSite naming paris", err)
	}
}

func TestJoinToken(t *testing.T) {
	info := JoinInfo{Tenant: "default", Central: []string{"nats-leaf://c1:7422", "nats-leaf://c2:7422"}, User: "leaf-default", Password: "s3cret-s3cret"}
	tok := JoinToken("paris", info)
	site, got, err := ParseJoinToken(" " + tok + "\n")
	if err != nil || site != "paris" || got.Password != info.Password || len(got.Central) != 2 {
		t.Fatalf("round trip: %q %+v %v", site, got, err)
	}
	for _, bad := range []string{"", "hello", tok[:len(tok)-5] + "!!!!!", joinPrefix + "e30"} {
		if _, _, err := ParseJoinToken(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseJoinToken(%q): %v, want ErrInvalidConfig", bad, err)
		}
	}
}
