package poller_test

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
)

const stormEngineID = "\x80\x00\x1f\x88\x05storm001"

// udpRcvbufErrors reads the kernel's count of UDP datagrams dropped for a
// full socket buffer (this network namespace), or -1.
func udpRcvbufErrors() int64 {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return -1
	}
	defer f.Close()
	var head []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = fields
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(fields) {
				n, _ := strconv.ParseInt(fields[i], 10, 64)
				return n
			}
		}
	}
	return -1
}

func stormVars(uptime uint32) []gosnmp.SnmpPDU {
	return []gosnmp.SnmpPDU{
		{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uptime},
		{Name: ".1.3.6.1.6.3.1.1.4.1.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.6.3.1.1.5.3"},
		{Name: ".1.3.6.1.2.1.2.2.1.1.3", Type: gosnmp.Integer, Value: 3},
	}
}

// v3Junk is an SNMPv3 authPriv trap with made-up keys: to the listener a
// wrong digest (for a configured user) or an unknown user.
func v3Junk(r *rand.Rand, user string) []byte {
	key := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	sp := &gosnmp.UsmSecurityParameters{
		AuthoritativeEngineID: "\x80\x00\x1f\x88\x05" + string(key(8)), AuthoritativeEngineBoots: 1, AuthoritativeEngineTime: 1,
		UserName: user, AuthenticationProtocol: gosnmp.SHA, PrivacyProtocol: gosnmp.AES,
		SecretKey: key(20), PrivacyKey: key(16), PrivacyParameters: key(8),
	}
	pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version3, MsgFlags: gosnmp.AuthPriv, SecurityModel: gosnmp.UserSecurityModel,
		SecurityParameters: sp, MsgID: r.Uint32() >> 1, PDUType: gosnmp.SNMPv2Trap, RequestID: r.Uint32() >> 1,
		Variables: stormVars(99999)}
	b, err := pkt.MarshalMsg()
	if err != nil {
		panic(err)
	}
	return b
}

// TestTrapStorm sends about 10,000 invalid packets a second for three
// seconds (random bytes, truncated traps, v3 with wrong keys or unknown
// users) at a running poller's trap port, while valid v2c and v3 traps and
// informs are sent alongside. The listener stays up, every valid trap
// becomes exactly one event, every inform is answered, and the invalid
// packets are counted (all of them, less any the kernel dropped for a full
// socket buffer).
func TestTrapStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm test")
	}
	e := newEnvChecks(t, 1, "127.89.0.1", meshmon.CheckICMP)
	users := poller.TrapUsers{Users: []poller.TrapUser{
		{Name: "storm", AuthProtocol: "SHA", AuthPassword: "storm-auth-1", PrivProtocol: "AES", PrivPassword: "storm-priv-1"},
	}}
	p, _ := e.runPoller(func(c *poller.Config) {
		c.TrapListen = "127.0.0.1:0"
		c.TrapUsers = users
		c.TrapQueue = 1 << 16
	})
	addr := p.TrapAddr().(*net.UDPAddr)
	rcvbuf0 := udpRcvbufErrors()

	// The junk, made before the storm so that sending it costs little.
	r := rand.New(rand.NewPCG(1, 2))
	tmpl, err := (&gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap,
		RequestID: 1, Variables: stormVars(99999)}).MarshalMsg()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([][]byte, 0, 4000)
	for i := range cap(junk) {
		switch i % 4 {
		case 0: // random bytes
			b := make([]byte, 1+r.IntN(300))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			junk = append(junk, b)
		case 1: // a truncated trap
			junk = append(junk, tmpl[:1+r.IntN(len(tmpl)-1)])
		case 2: // a configured user, wrong keys
			junk = append(junk, v3Junk(r, "storm"))
		case 3: // an unknown user
			junk = append(junk, v3Junk(r, "intruder"+strconv.Itoa(i)))
		}
	}

	const (
		rate     = 10000 // junk packets a second
		duration = 3 * time.Second
		nTraps   = 300 // valid traps of each version
		nInforms = 30  // valid informs of each version
	)
	var junkSent, stormTook atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the storm
		defer wg.Done()
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		start := time.Now()
		for n := 0; time.Since(start) < duration; {
			due := int(time.Since(start) * rate / time.Second)
			for ; n < due; n++ {
				if _, err := c.Write(junk[n%len(junk)]); err == nil {
					junkSent.Add(1)
				}
			}
			time.Sleep(time.Millisecond) // pacing
		}
		stormTook.Store(int64(time.Since(start)))
	}()

	sender := func(v gosnmp.SnmpVersion, engineID string) *gosnmp.GoSNMP {
		c := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(addr.Port), Version: v, Community: "public",
			Timeout: time.Second, Retries: 10}
		if v == gosnmp.Version3 {
			c.SecurityModel, c.MsgFlags = gosnmp.UserSecurityModel, gosnmp.AuthPriv
			c.SecurityParameters = &gosnmp.UsmSecurityParameters{UserName: "storm", AuthoritativeEngineID: engineID,
				AuthenticationProtocol: gosnmp.SHA, AuthenticationPassphrase: "storm-auth-1",
				PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: "storm-priv-1"}
		}
		if err := c.Connect(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c *gosnmp.GoSNMP, inform bool, first, n int, every time.Duration) {
		defer wg.Done()
		for i := range n {
			if _, err := c.SendTrap(gosnmp.SnmpTrap{IsInform: inform, Variables: stormVars(uint32(first + i))}); err != nil {
				t.Errorf("send %d (inform %v): %v", first+i, inform, err)
			}
			time.Sleep(every) // pacing
		}
	}
	wg.Add(4)
	go send(sender(gosnmp.Version2c, ""), false, 10000, nTraps, duration/nTraps)
	go send(sender(gosnmp.Version3, stormEngineID), false, 20000, nTraps, duration/nTraps)
	go send(sender(gosnmp.Version2c, ""), true, 30000, nInforms, duration/nInforms)
	go send(sender(gosnmp.Version3, ""), true, 40000, nInforms, duration/nInforms)
	start := time.Now()
	wg.Wait()
	took := time.Since(start)

	want := map[uint32]bool{}
	for _, base := range []int{10000, 20000} {
		for i := range nTraps {
			want[uint32(base+i)] = true
		}
	}
	for _, base := range []int{30000, 40000} {
		for i := range nInforms {
			want[uint32(base+i)] = true
		}
	}
	invalid := func() int64 {
		var n int64
		for _, c := range p.Stats().TrapsInvalid {
			n += int64(c)
		}
		return n
	}
	sent := junkSent.Load()
	// Wait for every trap to be stored, or for what the kernel dropped to
	// explain what is missing.
	var got map[uint32]int
	var lost int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = map[uint32]int{}
		for _, ev := range e.events("ev.lab.>") {
			if ev.Data.Trap != nil {
				got[ev.Data.Trap.Uptime]++
			}
		}
		lost = 0
		if rcvbuf0 >= 0 {
			lost = udpRcvbufErrors() - rcvbuf0
		}
		missing := int64(0)
		for u := range want {
			if got[u] == 0 {
				missing++
			}
		}
		if missing == 0 && invalid() == sent {
			break
		}
		if time.Now().After(deadline) {
			if missing+sent-invalid() <= lost {
				t.Logf("the kernel dropped %d datagrams for a full socket buffer; %d valid traps and %d invalid packets missing", lost, missing, sent-invalid())
				break
			}
			t.Fatalf("after the storm: %d of %d valid traps missing, %d of %d invalid packets counted (%v), kernel dropped %d",
				missing, len(want), invalid(), sent, p.Stats().TrapsInvalid, lost)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	for u, n := range got {
		if !want[u] {
			t.Errorf("an event with uptime %d came from a packet that is not a valid trap (%d times)", u, n)
		} else if n != 1 {
			t.Errorf("trap with uptime %d stored %d times", u, n)
		}
	}
	if n := invalid(); n > sent {
		t.Errorf("%d packets counted invalid, more than the %d sent", n, sent)
	}
	st := p.Stats()
	storm := time.Duration(stormTook.Load())
	t.Logf("storm: %d invalid packets in %s (%.0f/s) beside %d valid traps and %d informs (all sent in %s); counted %v; trap queue drops %d; kernel drops %d",
		sent, storm.Round(time.Millisecond), float64(sent)/storm.Seconds(), 2*nTraps, 2*nInforms, took.Round(time.Millisecond), st.TrapsInvalid, st.TrapsDropped, lost)

	// The counts reach the poller's heartbeat, which `meshmon status` shows.
	reg, err := bus.OpenRegistry(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the invalid counts in the heartbeat", func() bool {
		ps, err := reg.List(context.Background())
		if err != nil || len(ps) != 1 {
			return false
		}
		var n int64
		for _, c := range ps[0].TrapsInvalid {
			n += int64(c)
		}
		return n == invalid() && ps[0].TrapsInvalid["bad_auth"] > 0 && ps[0].TrapsInvalid["unknown_user"] > 0
	})

	// The listener is still up.
	c := sender(gosnmp.Version2c, "")
	if _, err := c.SendTrap(gosnmp.SnmpTrap{IsInform: true, Variables: stormVars(50000)}); err != nil {
		t.Fatalf("inform after the storm: %v", err)
	}
}
