package sim

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/meshmon/meshmon"
)

func TestV1GetAndGetNext(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 2))
	a := s.Agents()[1]
	g := client(t, a, version(gosnmp.Version1))

	if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != a.Name() {
		t.Errorf("sysName = %q, want %q", v.Value, a.Name())
	}
	res, err := g.GetNext([]string{".1.3.6.1.2.1.1.4"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Variables[0].Name; got != OIDSysContact {
		t.Errorf("getnext sysContact = %s, want %s", got, OIDSysContact)
	}
	// v1: unknown OID -> noSuchName with the index of the culprit.
	res, err = g.Get([]string{OIDSysName, ".1.3.6.1.2.1.1.99.0"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != gosnmp.NoSuchName || res.ErrorIndex != 2 {
		t.Errorf("v1 get of unknown: error %v index %d, want noSuchName index 2", res.Error, res.ErrorIndex)
	}
	// v1 never sees Counter64 (ifXTable's HC columns); after the last ifName
	// comes the end of the view: noSuchName.
	res, err = g.GetNext([]string{OIDIfXEntry + ".1.4"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != gosnmp.NoSuchName {
		t.Errorf("v1 getnext past ifName.4: error %v (%v), want noSuchName", res.Error, res.Variables)
	}
	// A v1 walk covers system, ifNumber, ifTable and ifName.
	pdus, err := g.WalkAll(".1.3.6.1.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if want := 7 + 8*4 + 4; len(pdus) != want {
		t.Errorf("v1 walk: %d varbinds, want %d", len(pdus), want)
	}
}

func TestV2cGetBulkWalk(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 3))
	a := s.Agents()[2]
	g := client(t, a)

	for _, c := range []struct {
		root string
		want int
	}{{OIDIfTable, 8 * 4}, {OIDIfXTable, 3 * 4}, {".1.3.6.1.2.1.1", 6}} {
		pdus, err := g.BulkWalkAll(c.root)
		if err != nil {
			t.Fatalf("bulkwalk %s: %v", c.root, err)
		}
		if len(pdus) != c.want {
			t.Errorf("bulkwalk %s: %d varbinds, want %d", c.root, len(pdus), c.want)
		}
		for i := 1; i < len(pdus); i++ {
			p, _ := parseOID(pdus[i-1].Name)
			q, _ := parseOID(pdus[i].Name)
			if slices.Compare(p, q) >= 0 {
				t.Errorf("bulkwalk %s: %s then %s is not increasing", c.root, pdus[i-1].Name, pdus[i].Name)
			}
		}
	}
	// Numeric, not textual, order: ifEntry.10 (ifInOctets) comes after .8.
	res, err := g.GetNext([]string{OIDIfEntry + ".8.4"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Variables[0].Name; got != OIDIfEntry+".10.1" {
		t.Errorf("getnext ifOperStatus.4 = %s, want ifInOctets.1", got)
	}

	res, err = g.Get([]string{OIDIfEntry + ".2.99", ".1.3.6.1.4.1.99999.1.0", OIDIfEntry + ".10.1", OIDIfXEntry + ".6.1"})
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []gosnmp.Asn1BER{gosnmp.NoSuchInstance, gosnmp.NoSuchObject, gosnmp.Counter32, gosnmp.Counter64}
	for i, v := range res.Variables {
		if v.Type != wantTypes[i] {
			t.Errorf("get %s: type %v, want %v", v.Name, v.Type, wantTypes[i])
		}
	}

	// The last object is followed by endOfMibView.
	res, err = g.GetNext([]string{OIDIfXEntry + ".10.4"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Variables[0].Type != gosnmp.EndOfMibView {
		t.Errorf("getnext of the last object: %v, want endOfMibView", res.Variables[0].Type)
	}
	res, err = g.GetBulk([]string{OIDSysUpTime, OIDIfXEntry + ".10.3"}, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Variables) < 3 || res.Variables[0].Name != OIDSysContact || res.Variables[1].Name != OIDIfXEntry+".10.4" || res.Variables[2].Type != gosnmp.EndOfMibView {
		t.Errorf("getbulk non-repeater then end of view: %v", res.Variables)
	}
}

func TestWrongCommunityIsIgnored(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 1))
	g := client(t, s.Agents()[0], community("private"), timeout(200*time.Millisecond, 0))
	if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
		t.Fatalf("get with wrong community: err %v, want a timeout", err)
	}
	if s.badCommunity.Load() == 0 {
		t.Error("bad community not counted")
	}
}

func TestVersionsNotServedAreIgnored(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 1)
	cfg.Versions = []string{meshmon.SNMPv3}
	s := startSim(t, cfg)
	g := client(t, s.Agents()[0], timeout(200*time.Millisecond, 0))
	if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
		t.Fatalf("v2c get of a v3-only agent: err %v, want a timeout", err)
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig(t, 1)
	cfg.Now = clock.Now
	s := startSim(t, cfg)
	a := s.Agents()[0]
	g := client(t, a)

	counters := func() (c32 uint32, c64 uint64) {
		res, err := g.Get([]string{OIDIfEntry + ".10.2", OIDIfXEntry + ".6.2"})
		if err != nil {
			t.Fatal(err)
		}
		return uint32(gosnmp.ToBigInt(res.Variables[0].Value).Uint64()), gosnmp.ToBigInt(res.Variables[1].Value).Uint64()
	}
	c32, c64 := counters()
	if c32 != 0 || c64 != 0 {
		t.Fatalf("counters at boot = %d, %d, want 0", c32, c64)
	}
	clock.Advance(10 * time.Second)
	c32, c64 = counters()
	rate, _ := ifRates(1, 2)
	if c64 != 10*rate || uint64(c32) != c64 {
		t.Errorf("after 10s: in %d (32) %d (64), want %d", c32, c64, 10*rate)
	}

	// Near the wrap, Counter32 wraps and Counter64 goes on.
	if err := a.SetCounterBase(2, 1<<32-1000); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	c32, c64 = counters()
	if c64 != 1<<32-1000+rate || uint64(c32) != c64-1<<32 {
		t.Errorf("after wrap: ifInOctets %d ifHCInOctets %d", c32, c64)
	}

	// A down interface's counters stand still.
	if err := a.SetIfOper(2, false); err != nil {
		t.Fatal(err)
	}
	_, before := counters()
	clock.Advance(time.Minute)
	if _, after := counters(); after != before {
		t.Errorf("down interface counted from %d to %d", before, after)
	}
	if v := get1(t, g, OIDSysUpTime); uptime(v) != 100*71 {
		t.Errorf("sysUpTime = %v, want %d", v.Value, 100*71)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig(t, 2)
	cfg.Now = clock.Now
	s := startSim(t, cfg)
	a, other := s.Agents()[0], s.Agents()[1]
	g := client(t, a, timeout(300*time.Millisecond, 0))

	t.Run("down", func(t *testing.T) {
		a.Down(true)
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Fatalf("get while down: err %v, want timeout", err)
		}
		a.Down(false)
		get1(t, g, OIDSysName)
	})
	t.Run("interface", func(t *testing.T) {
		if err := a.SetIfOper(3, false); err != nil {
			t.Fatal(err)
		}
		if v := get1(t, g, OIDIfEntry+".8.3"); v.Value != 2 {
			t.Errorf("ifOperStatus.3 = %v, want 2", v.Value)
		}
		if v := get1(t, g, OIDIfEntry+".7.3"); v.Value != 1 {
			t.Errorf("ifAdminStatus.3 = %v, want 1", v.Value)
		}
		if err := a.SetIfOper(3, true); err != nil {
			t.Fatal(err)
		}
		if v := get1(t, g, OIDIfEntry+".8.3"); v.Value != 1 {
			t.Errorf("ifOperStatus.3 = %v, want 1", v.Value)
		}
		if err := a.SetIfOper(9, false); !errors.Is(err, ErrUnknownInterface) {
			t.Errorf("SetIfOper(9): %v, want ErrUnknownInterface", err)
		}
	})
	t.Run("reboot", func(t *testing.T) {
		clock.Advance(time.Hour)
		before := uptime(get1(t, g, OIDSysUpTime))
		a.Reboot()
		clock.Advance(time.Second)
		after := uptime(get1(t, g, OIDSysUpTime))
		if after >= before || after != 100 {
			t.Errorf("sysUpTime %d before reboot, %d after, want 100", before, after)
		}
		if a.Boots() != 2 {
			t.Errorf("boots = %d, want 2", a.Boots())
		}
	})
	t.Run("delay", func(t *testing.T) {
		const d = 400 * time.Millisecond
		a.SetDelay(d)
		defer a.SetDelay(0)
		slow := client(t, a, timeout(5*time.Second, 0))
		fast := client(t, other, timeout(5*time.Second, 0))
		done := make(chan time.Duration, 1)
		start := time.Now()
		go func() {
			_, err := slow.Get([]string{OIDSysName})
			if err != nil {
				t.Errorf("delayed get: %v", err)
			}
			done <- time.Since(start)
		}()
		// The other agent answers while the slow one holds its answer.
		get1(t, fast, OIDSysName)
		if took := <-done; took < d {
			t.Errorf("delayed answer after %s, want at least %s", took, d)
		}
		// Too short a client timeout now times out.
		if _, err := g.Get([]string{OIDSysName}); !isTimeout(err) {
			t.Errorf("get with timeout below the delay: err %v, want timeout", err)
		}
	})
	if a.Answered() == 0 || s.Answered() < a.Answered() {
		t.Errorf("answered: agent %d, sim %d", a.Answered(), s.Answered())
	}
}

func TestAgentsAndAddresses(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 300)
	cfg.BaseAddr = mustBase(t, "127.81.200.250")
	s := startSim(t, cfg)
	seen := map[string]bool{}
	for i, a := range s.Agents() {
		if err := meshmon.ValidateName("device", a.Name()); err != nil {
			t.Fatal(err)
		}
		b := a.Addr().Addr().As4()
		if b[3] == 0 || b[3] == 255 || a.Addr().Port() == 0 || seen[a.Addr().Addr().String()] {
			t.Fatalf("agent %d: bad or duplicate address %s", i, a.Addr())
		}
		seen[a.Addr().Addr().String()] = true
		if s.Agent(a.Name()) != a {
			t.Fatalf("Agent(%q) is not agent %d", a.Name(), i)
		}
	}
	if got := s.Agents()[0].Name(); got != "sim-00001" {
		t.Errorf("first name %q, want sim-00001", got)
	}
	if s.Agent("nope") != nil {
		t.Error("Agent(nope) is not nil")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func uptime(v gosnmp.SnmpPDU) uint32 { return uint32(gosnmp.ToBigInt(v.Value).Uint64()) }

func TestFreezeUptime(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig(t, 1)
	cfg.Now = clock.Now
	s := startSim(t, cfg)
	a := s.Agents()[0]
	g := client(t, a, timeout(time.Second, 1))
	clock.Advance(time.Minute)
	a.FreezeUptime(true)
	first := uptime(get1(t, g, OIDSysUpTime))
	clock.Advance(10 * time.Minute)
	if got := uptime(get1(t, g, OIDSysUpTime)); got != first || first != 60_00 {
		t.Fatalf("frozen sysUpTime: %d then %d, want 6000 twice", first, got)
	}
	a.Reboot()
	if got := uptime(get1(t, g, OIDSysUpTime)); got != 0 {
		t.Fatalf("frozen sysUpTime after a reboot: %d, want 0", got)
	}
	a.FreezeUptime(false)
	clock.Advance(time.Second)
	if got := uptime(get1(t, g, OIDSysUpTime)); got != 100 {
		t.Fatalf("thawed sysUpTime: %d, want 100", got)
	}
}
