package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// needTool returns the path of a command the test needs. It skips the test
// when the command is missing, except under CI=true, where it fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (apt-get install snmpd snmp): %v", name, err)
		}
		t.Skipf("%s not installed (apt-get install snmpd snmp); skipping", name)
	}
	return path
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free udp port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// Test agent credentials.
const (
	testSysName   = "meshmon-snmpd-test"
	testAuthPass  = "authpass123"
	testPrivPass  = "privpass123"
	testCommunity = "public"
)

// testAgent is a net-snmp snmpd on a loopback port, owned by one test.
type testAgent struct {
	t       *testing.T
	bin     string
	dir     string
	conf    string
	port    int
	ipv6    bool
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	output  bytes.Buffer
	outLock sync.Mutex
}

func (a *testAgent) Write(p []byte) (int, error) {
	a.outLock.Lock()
	defer a.outLock.Unlock()
	return a.output.Write(p)
}

func (a *testAgent) log() string {
	a.outLock.Lock()
	defer a.outLock.Unlock()
	return a.output.String()
}

// startAgent writes an snmpd configuration into a temporary directory (its
// persistent directory too, so nothing touches /var/lib/snmp) and starts
// snmpd on a free loopback port; it stops it in t.Cleanup.
func startAgent(t *testing.T) *testAgent {
	t.Helper()
	a := &testAgent{t: t, bin: needTool(t, "snmpd"), dir: t.TempDir(), port: freeUDPPort(t)}
	if c, err := net.ListenPacket("udp6", net.JoinHostPort("::1", strconv.Itoa(a.port))); err == nil {
		c.Close()
		a.ipv6 = true
	}
	persist := filepath.Join(a.dir, "persist")
	if err := os.Mkdir(persist, 0o700); err != nil {
		t.Fatal(err)
	}
	a.conf = filepath.Join(a.dir, "snmpd.conf")
	conf := fmt.Sprintf(`[snmp] persistentDir %s
rocommunity %s 127.0.0.1
rocommunity6 %s ::1
view noifx included .1
view noifx excluded .1.3.6.1.2.1.31
rocommunity noifx 127.0.0.1 -V noifx
sysName %s
createUser authpriv SHA "%s" AES "%s"
createUser authonly SHA "%s"
createUser sha256aes256 SHA-256 "%s" AES-256 "%s"
createUser md5des MD5 "%s" DES "%s"
createUser noauth
rouser authpriv priv
rouser authonly auth
rouser sha256aes256 priv
rouser md5des priv
rouser noauth noauth
`, persist, testCommunity, testCommunity, testSysName,
		testAuthPass, testPrivPass, testAuthPass, testAuthPass, testPrivPass, testAuthPass, testPrivPass)
	if err := os.WriteFile(a.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	a.start()
	return a
}

// start runs snmpd and waits until it answers a GET.
func (a *testAgent) start() {
	t := a.t
	t.Helper()
	listen := fmt.Sprintf("udp:127.0.0.1:%d", a.port)
	if a.ipv6 {
		listen += fmt.Sprintf(",udp6:[::1]:%d", a.port)
	}
	cmd := exec.Command(a.bin, "-f", "-Lo", "-C", "-c", a.conf, "-p", filepath.Join(a.dir, "snmpd.pid"), listen)
	cmd.Env = append(os.Environ(),
		"SNMPCONFPATH="+a.dir,
		"SNMP_PERSISTENT_DIR="+filepath.Join(a.dir, "persist"),
		"MIBS=", "MIBDIRS="+a.dir)
	cmd.Stdout, cmd.Stderr = a, a
	if err := cmd.Start(); err != nil {
		t.Fatalf("start snmpd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	a.mu.Lock()
	a.cmd, a.exited = cmd, exited
	a.mu.Unlock()

	// Ready when it has answered for a while without a miss: right after
	// start-up snmpd briefly closes and reopens its socket (seen as a stray
	// "port unreachable" on the first poll), so one answer is not enough.
	deadline := time.Now().Add(15 * time.Second)
	var goodSince time.Time
	for {
		select {
		case <-exited:
			t.Fatalf("snmpd exited early:\n%s", a.log())
		default:
		}
		c := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(a.port), Community: testCommunity,
			Version: gosnmp.Version2c, Timeout: 100 * time.Millisecond}
		if err := c.Connect(); err == nil {
			_, err = c.Get([]string{oidSysName})
			c.Close()
			switch {
			case err != nil:
				goodSince = time.Time{}
			case goodSince.IsZero():
				goodSince = time.Now()
			case time.Since(goodSince) > 500*time.Millisecond:
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("snmpd did not answer on port %d within 15s:\n%s", a.port, a.log())
		}
	}
}

// stop ends snmpd and waits for it; it is idempotent.
func (a *testAgent) stop() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (a *testAgent) device(s meshmon.SNMP) meshmon.Device {
	s.Port = a.port
	return meshmon.Device{
		Name:     "agent",
		Address:  "127.0.0.1",
		Checks:   []string{meshmon.CheckSNMP},
		Interval: meshmon.Duration(10 * time.Second),
		Timeout:  meshmon.Duration(300 * time.Millisecond),
		Retries:  1,
		SNMP:     &s,
	}
}

func newProber(t *testing.T, d meshmon.Device) *SNMPProber {
	t.Helper()
	p, err := NewSNMPProber(d)
	if err != nil {
		t.Fatalf("NewSNMPProber: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func pollCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkGood checks a result of a healthy agent.
func checkGood(t *testing.T, r SNMPResult, wantHC bool) {
	t.Helper()
	if !r.OK {
		t.Fatalf("poll failed: reason %q, err %v", r.Reason, r.Err)
	}
	if r.SysName != testSysName {
		t.Errorf("SysName = %q, want %q", r.SysName, testSysName)
	}
	if r.SysDescr == "" {
		t.Error("SysDescr is empty")
	}
	if r.SysObjectID == "" || r.SysObjectID[0] == '.' {
		t.Errorf("SysObjectID = %q, want an OID without a leading dot", r.SysObjectID)
	}
	var lo *IfRow
	for i := range r.Interfaces {
		if i > 0 && r.Interfaces[i-1].Index >= r.Interfaces[i].Index {
			t.Errorf("interfaces not ordered by index: %d then %d", r.Interfaces[i-1].Index, r.Interfaces[i].Index)
		}
		if r.Interfaces[i].Descr == "lo" {
			lo = &r.Interfaces[i]
		}
	}
	if lo == nil {
		t.Fatalf("no interface lo in %+v", r.Interfaces)
	}
	if lo.AdminStatus != 1 || lo.OperStatus != 1 {
		t.Errorf("lo admin/oper = %d/%d, want 1/1", lo.AdminStatus, lo.OperStatus)
	}
	if lo.InOctets == 0 || lo.OutOctets == 0 {
		t.Errorf("lo counters in/out = %d/%d, want > 0 (this test talks over lo)", lo.InOctets, lo.OutOctets)
	}
	if lo.HC != wantHC {
		t.Errorf("lo HC = %v, want %v", lo.HC, wantHC)
	}
	if wantHC && lo.Name != "lo" {
		t.Errorf("lo ifName = %q, want lo", lo.Name)
	}
}

func TestSNMPPollVersions(t *testing.T) {
	a := startAgent(t)
	tests := []struct {
		name   string
		snmp   meshmon.SNMP
		addr   string
		wantHC bool
	}{
		{"v1", meshmon.SNMP{Version: meshmon.SNMPv1, Community: testCommunity}, "", false},
		{"v2c", meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity}, "", true},
		{"v2c host name", meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity}, "localhost", true},
		{"v2c ipv6", meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity}, "::1", true},
		{"v3 noAuthNoPriv", meshmon.SNMP{Version: meshmon.SNMPv3, User: "noauth"}, "", true},
		{"v3 authNoPriv SHA", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authonly",
			AuthProtocol: "SHA", AuthPassword: testAuthPass}, "", true},
		{"v3 authPriv SHA AES", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authpriv",
			AuthProtocol: "SHA", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: testPrivPass}, "", true},
		{"v3 authPriv SHA256 AES256", meshmon.SNMP{Version: meshmon.SNMPv3, User: "sha256aes256",
			AuthProtocol: "SHA256", AuthPassword: testAuthPass, PrivProtocol: "AES256", PrivPassword: testPrivPass}, "", true},
		{"v3 authPriv MD5 DES", meshmon.SNMP{Version: meshmon.SNMPv3, User: "md5des",
			AuthProtocol: "MD5", AuthPassword: testAuthPass, PrivProtocol: "DES", PrivPassword: testPrivPass}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.addr == "::1" && !a.ipv6 {
				t.Skip("no IPv6 loopback here")
			}
			d := a.device(tt.snmp)
			if tt.addr != "" {
				d.Address = tt.addr
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("test device invalid: %v", err)
			}
			p := newProber(t, d)
			checkGood(t, p.Poll(pollCtx(t)), tt.wantHC)
			// The socket is kept; a second poll works on it.
			checkGood(t, p.Poll(pollCtx(t)), tt.wantHC)
		})
	}
}

// TestSNMPWalkSmallBulk forces one row per GETBULK so the walk takes many
// round trips, and checks it sees the same table as the default.
func TestSNMPWalkSmallBulk(t *testing.T) {
	a := startAgent(t)
	d := a.device(meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity})
	want := newProber(t, d).Poll(pollCtx(t))
	checkGood(t, want, true)
	p := newProber(t, d)
	p.bulkVarbinds = 1
	got := p.Poll(pollCtx(t))
	checkGood(t, got, true)
	if len(got.Interfaces) != len(want.Interfaces) {
		t.Fatalf("small-bulk walk saw %d interfaces, default %d", len(got.Interfaces), len(want.Interfaces))
	}
	for i := range got.Interfaces {
		g, w := got.Interfaces[i], want.Interfaces[i]
		if g.Index != w.Index || g.Name != w.Name || g.Descr != w.Descr || g.HC != w.HC {
			t.Errorf("interface %d: small bulk %+v, default %+v", i, g, w)
		}
	}
}

// TestSNMPNoIfXTable polls through a view without ifXTable, like an old
// agent: the poll still succeeds, with 32-bit counters and no ifName.
func TestSNMPNoIfXTable(t *testing.T) {
	a := startAgent(t)
	p := newProber(t, a.device(meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "noifx"}))
	r := p.Poll(pollCtx(t))
	checkGood(t, r, false)
	for _, row := range r.Interfaces {
		if row.Name != "" || row.HC {
			t.Errorf("interface %d has ifXTable data without ifXTable: %+v", row.Index, row)
		}
	}
}

func TestSNMPFailures(t *testing.T) {
	a := startAgent(t)
	tests := []struct {
		name       string
		snmp       meshmon.SNMP
		want       error
		wantReason string
		quick      bool // a report, not a timeout
	}{
		{"wrong community", meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "wrong"},
			ErrSNMPTimeout, "timeout", false},
		{"wrong v1 community", meshmon.SNMP{Version: meshmon.SNMPv1, Community: "wrong"},
			ErrSNMPTimeout, "timeout", false},
		{"wrong auth password", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authonly",
			AuthProtocol: "SHA", AuthPassword: "wrongpass123"},
			ErrSNMPAuth, "authentication failure (wrong v3 auth password?)", true},
		{"wrong auth protocol", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authpriv",
			AuthProtocol: "MD5", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: testPrivPass},
			ErrSNMPAuth, "authentication failure (wrong v3 auth password?)", true},
		{"unknown user", meshmon.SNMP{Version: meshmon.SNMPv3, User: "nobody",
			AuthProtocol: "SHA", AuthPassword: testAuthPass},
			ErrSNMPUnknownUser, "unknown user", true},
		// net-snmp cannot tell a wrong AES key from garbage: the decrypted
		// PDU does not parse and it drops the request without a report.
		{"wrong priv password", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authpriv",
			AuthProtocol: "SHA", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: "wrongpriv123"},
			ErrSNMPTimeout, "timeout", false},
		{"level above the user's", meshmon.SNMP{Version: meshmon.SNMPv3, User: "authonly",
			AuthProtocol: "SHA", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: testPrivPass},
			ErrSNMPSecurityLevel, "unsupported security level", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.device(tt.snmp)
			if tt.quick {
				// A long timeout: a report must end the poll long before it.
				d.Timeout = meshmon.Duration(5 * time.Second)
			}
			p := newProber(t, d)
			r := p.Poll(pollCtx(t))
			if r.OK {
				t.Fatalf("poll succeeded, want %v", tt.want)
			}
			if errors.Is(r.Err, ErrSNMPRefused) {
				a.mu.Lock()
				exited := a.exited
				a.mu.Unlock()
				select {
				case <-exited:
					t.Logf("snmpd has exited; its log:\n%s", a.log())
				default:
					t.Logf("snmpd still runs; its log:\n%s", a.log())
				}
			}
			if !errors.Is(r.Err, tt.want) {
				t.Errorf("Err = %v, want it to wrap %v", r.Err, tt.want)
			}
			if r.Reason != tt.wantReason {
				t.Errorf("Reason = %q, want %q", r.Reason, tt.wantReason)
			}
			if tt.quick && r.Took >= d.Timeout.D() {
				t.Errorf("took %s: waited for a timeout instead of acting on the agent's report", r.Took)
			}
		})
	}
}

// TestSNMPAgentRestart stops and restarts snmpd under a prober (same
// engine id, engine boots + 1) and checks the same prober recovers.
func TestSNMPAgentRestart(t *testing.T) {
	a := startAgent(t)
	devs := map[string]meshmon.Device{
		"v2c": a.device(meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity}),
		"v3": a.device(meshmon.SNMP{Version: meshmon.SNMPv3, User: "authpriv",
			AuthProtocol: "SHA", AuthPassword: testAuthPass, PrivProtocol: "AES", PrivPassword: testPrivPass}),
	}
	probers := map[string]*SNMPProber{}
	for name, d := range devs {
		probers[name] = newProber(t, d)
		checkGood(t, probers[name].Poll(pollCtx(t)), true)
	}

	// A reboot between two polls: the first poll after it must succeed.
	a.stop()
	a.start()
	for name, p := range probers {
		if r := p.Poll(pollCtx(t)); !r.OK {
			t.Errorf("%s: first poll after agent restart: reason %q, err %v", name, r.Reason, r.Err)
		}
	}

	// A poll while the agent is down fails, and one after it is back works.
	a.stop()
	for name, p := range probers {
		r := p.Poll(pollCtx(t))
		if r.OK {
			t.Fatalf("%s: poll of a stopped agent succeeded", name)
		}
		// On loopback the kernel answers port unreachable; on a real
		// network the request usually just times out.
		if !errors.Is(r.Err, ErrSNMPTimeout) && !errors.Is(r.Err, ErrSNMPRefused) {
			t.Errorf("%s: stopped agent: reason %q, err %v; want timeout or port unreachable", name, r.Reason, r.Err)
		}
	}
	a.start()
	for name, p := range probers {
		checkGood(t, p.Poll(pollCtx(t)), true)
		_ = name
	}
}

// blackHole is a UDP socket that reads requests and never answers; it
// closes got when the first request arrives.
func blackHole(t *testing.T) (port int, got <-chan struct{}) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			once.Do(func() { close(ch) })
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).Port, ch
}

func TestSNMPCancel(t *testing.T) {
	port, got := blackHole(t)
	d := meshmon.Device{Name: "hole", Address: "127.0.0.1", Timeout: meshmon.Duration(time.Minute), Retries: 3,
		SNMP: &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: testCommunity, Port: port}}
	p := newProber(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan SNMPResult, 1)
	go func() { res <- p.Poll(ctx) }()
	<-got // the request is in flight
	cancel()
	r := <-res
	if r.OK || r.Reason != "cancelled" || !errors.Is(r.Err, ErrSNMPCancelled) || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("cancelled poll: OK %v reason %q err %v", r.OK, r.Reason, r.Err)
	}

	// Already cancelled: no request at all.
	r = p.Poll(ctx)
	if r.Reason != "cancelled" || !errors.Is(r.Err, ErrSNMPCancelled) {
		t.Fatalf("poll with a cancelled context: reason %q err %v", r.Reason, r.Err)
	}

	// A context deadline counts as a timeout.
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	r = p.Poll(dctx)
	if r.Reason != "timeout" || !errors.Is(r.Err, ErrSNMPTimeout) || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("poll past its context deadline: reason %q err %v", r.Reason, r.Err)
	}
}

func TestNewSNMPProberErrors(t *testing.T) {
	tests := []struct {
		name string
		snmp *meshmon.SNMP
	}{
		{"no snmp", nil},
		{"bad version", &meshmon.SNMP{Version: "4"}},
		{"bad auth", &meshmon.SNMP{Version: meshmon.SNMPv3, User: "u", AuthProtocol: "SHA1"}},
		{"bad priv", &meshmon.SNMP{Version: meshmon.SNMPv3, User: "u", AuthProtocol: "SHA", PrivProtocol: "3DES"}},
		{"bad port", &meshmon.SNMP{Version: meshmon.SNMPv2c, Community: "c", Port: 70000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSNMPProber(meshmon.Device{Name: "d", Address: "127.0.0.1", SNMP: tt.snmp})
			if !errors.Is(err, ErrSNMPConfig) {
				t.Fatalf("err = %v, want ErrSNMPConfig", err)
			}
		})
	}
}

func TestClassifySNMPError(t *testing.T) {
	bg := context.Background()
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		want   error
		reason string
	}{
		{"dns", bg, fmt.Errorf("connect: %w", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}),
			ErrSNMPNoSuchHost, "no such host"},
		{"refused", bg, &net.OpError{Op: "read", Err: os.NewSyscallError("recvfrom", syscall.ECONNREFUSED)},
			ErrSNMPRefused, "port unreachable (no agent listening)"},
		{"gosnmp timeout", bg, fmt.Errorf("request timeout (after 1 retries): %w", gosnmp.ErrMaxRetriesExceeded),
			ErrSNMPTimeout, "timeout"},
		{"wrong digest", bg, gosnmp.ErrWrongDigest, ErrSNMPAuth, "authentication failure (wrong v3 auth password?)"},
		{"unknown engine", bg, gosnmp.ErrUnknownEngineID, ErrSNMPUnknownEngine, "unknown engine"},
		{"time window", bg, gosnmp.ErrNotInTimeWindow, ErrSNMPNotInTimeWindow, "not in time window"},
		{"error status", bg, &responseError{status: gosnmp.GenErr, index: 1}, ErrSNMPResponse, "error status GenErr"},
		{"cancelled", cancelled, errors.New("anything"), ErrSNMPCancelled, "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, err := classifySNMPError(tt.ctx, tt.err)
			if reason != tt.reason || !errors.Is(err, tt.want) {
				t.Errorf("got %q, %v; want %q wrapping %v", reason, err, tt.reason, tt.want)
			}
		})
	}
}

func TestCounterDelta(t *testing.T) {
	const max32, max64 = 1<<32 - 1, ^uint64(0)
	tests := []struct {
		name      string
		prev, cur uint64
		bits      int
		want      uint64
		wantOK    bool
	}{
		{"32 no change", 10, 10, 32, 0, true},
		{"32 growth", 10, 25, 32, 15, true},
		{"32 wrap", max32 - 4, 5, 32, 10, true},
		{"32 wrap from max", max32, 0, 32, 1, true},
		{"32 wrap exactly half", 1 << 31, 0, 32, 1 << 31, true},
		{"32 reset", 1 << 30, 5, 32, 0, false},
		{"32 value too wide", 1 << 33, 1<<33 + 1, 32, 0, false},
		{"64 growth", 1 << 40, 1<<40 + 7, 64, 7, true},
		{"64 wrap", max64 - 1, 3, 64, 5, true},
		{"64 reset", 1 << 62, 100, 64, 0, false},
		{"bad width", 1, 2, 16, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := CounterDelta(tt.prev, tt.cur, tt.bits)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("CounterDelta(%d, %d, %d) = %d, %v; want %d, %v", tt.prev, tt.cur, tt.bits, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestOIDLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.2.1", true},
		{"1.3.6.1.2.1.2.2.1.2.9", "1.3.6.1.2.1.2.2.1.2.10", true},
		{"1.3.6.1.2.1.2.2.1.2.10", "1.3.6.1.2.1.2.2.1.2.9", false},
		{"1.3.6.1.2.1.2.2.1.2.1", "1.3.6.1.2.1.2.2.1.2.1", false},
		{"1.3.6.1.2.1.2.2.1.3", "1.3.6.1.2.1.2.2.1.2.5", false},
		{"1.3.6.1", "1.3.6.1.0", true},
		{"1.3.6.1.0", "1.3.6.1", false},
		{".1.3.6.1.9", ".1.3.6.1.10", false}, // not numeric (the leading dot): compared as text
		{"", "1", true},
	}
	for _, tt := range tests {
		if got := oidLess(tt.a, tt.b); got != tt.want {
			t.Errorf("oidLess(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { oidLess("1.3.6.1.2.1.2.2.1.2.9", "1.3.6.1.2.1.2.2.1.2.10") }); n != 0 {
		t.Errorf("oidLess allocates %v times a call, want 0: it runs for every varbind of a walk", n)
	}
}

// TestClientPoolDropsIdle: clients left idle in the pool past its idle
// time are dropped as polls give others back, down to what is in use.
func TestClientPoolDropsIdle(t *testing.T) {
	cp := clientPool{max: 8, idle: time.Minute}
	long := time.Now().Add(-2 * time.Minute)
	for range 5 {
		cp.free = append(cp.free, pooledClient{c: &gosnmp.GoSNMP{}, back: long})
	}
	cp.put(&gosnmp.GoSNMP{}) // one given back now: the oldest goes
	if n := cp.size(); n != 5 {
		t.Fatalf("pool holds %d after a put, want 5", n)
	}
	// One poll at a time: each takes the client on top and gives it back.
	for range 10 {
		c := cp.take()
		if c == nil {
			t.Fatal("pool empty")
		}
		cp.put(c)
	}
	if n := cp.size(); n != 1 {
		t.Fatalf("pool holds %d after polls one at a time, want 1", n)
	}
	// Clients given back within the idle time stay.
	cp.put(&gosnmp.GoSNMP{})
	cp.put(&gosnmp.GoSNMP{})
	if n := cp.size(); n != 3 {
		t.Fatalf("pool holds %d, want 3", n)
	}
}
