package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/snmpv3"
)

func TestV3(t *testing.T) {
	t.Parallel()
	users := []V3User{
		{Name: "sha-aes", AuthProtocol: "SHA", AuthPassword: "auth-pass-1", PrivProtocol: "AES", PrivPassword: "priv-pass-1"},
		{Name: "md5-des", AuthProtocol: "MD5", AuthPassword: "auth-pass-2", PrivProtocol: "DES", PrivPassword: "priv-pass-2"},
		{Name: "sha256-aes256", AuthProtocol: "SHA256", AuthPassword: "auth-pass-3", PrivProtocol: "AES256", PrivPassword: "priv-pass-3"},
		{Name: "sha512", AuthProtocol: "SHA512", AuthPassword: "auth-pass-4"},
		{Name: "noauth"},
	}
	cfg := testConfig(t, 2)
	cfg.Users = users
	s := startSim(t, cfg)
	a := s.Agents()[1]
	for _, u := range users {
		t.Run(u.Name, func(t *testing.T) {
			g := client(t, a, v3(u.Name, u.AuthProtocol, u.AuthPassword, u.PrivProtocol, u.PrivPassword))
			if v := get1(t, g, OIDSysName); string(v.Value.([]byte)) != a.Name() {
				t.Errorf("sysName = %q", v.Value)
			}
			pdus, err := g.BulkWalkAll(OIDIfTable)
			if err != nil {
				t.Fatal(err)
			}
			if len(pdus) != 8*4 {
				t.Errorf("bulkwalk ifTable: %d varbinds, want 32", len(pdus))
			}
		})
	}
}

func TestV3WrongCredentials(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 1))
	a := s.Agents()[0]
	const clientTimeout, retries = 2 * time.Second, 2
	cases := []struct {
		name string
		opt  clientOpt
		stat func() uint32
		is   error // a gosnmp error the client must return, if it can tell
	}{
		{"wrong auth password", v3("meshmon", "SHA", "not-the-password", "AES", "meshmon-priv"), s.usm.wrongDigests.Load, nil},
		{"unknown user authPriv", v3("mallory", "SHA", "meshmon-auth", "AES", "meshmon-priv"), s.usm.unknownUserNames.Load, nil},
		{"unknown user noAuth", v3("mallory", "", "", "", ""), s.usm.unknownUserNames.Load, gosnmp.ErrUnknownUsername},
		{"wrong level", v3("meshmon", "", "", "", ""), s.usm.unsupportedSecLevels.Load, gosnmp.ErrUnknownSecurityLevel},
		{"wrong priv password", v3("meshmon", "SHA", "meshmon-auth", "AES", "not-the-password"), s.usm.decryptionErrors.Load, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.stat()
			g := client(t, a, c.opt, timeout(clientTimeout, retries))
			start := time.Now()
			_, err := g.Get([]string{OIDSysName})
			took := time.Since(start)
			if err == nil {
				t.Fatal("get succeeded")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, want %v", err, c.is)
			}
			// The agent reported rather than stayed silent, so the client
			// failed on the report instead of waiting out its timeouts.
			if isTimeout(err) || took >= clientTimeout {
				t.Errorf("client waited %s and got %v; want a prompt error", took, err)
			}
			if c.stat() == before {
				t.Error("usmStats counter did not move")
			}
		})
	}
}

func TestV3ResyncAfterReboot(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	cfg := testConfig(t, 1)
	cfg.Now = clock.Now
	s := startSim(t, cfg)
	a := s.Agents()[0]
	g := client(t, a, v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv"))
	clock.Advance(time.Hour)
	before := uptime(get1(t, g, OIDSysUpTime))
	a.Reboot()
	clock.Advance(2 * time.Second)
	after := uptime(get1(t, g, OIDSysUpTime)) // notInTimeWindow report, then the answer
	if after >= before || s.usm.notInTimeWindows.Load() == 0 {
		t.Errorf("uptime %d -> %d, notInTimeWindows %d", before, after, s.usm.notInTimeWindows.Load())
	}
	// A manager whose idea of engine time is stale by more than 150 s
	// is also brought back in.
	clock.Advance(10 * time.Minute)
	get1(t, g, OIDSysUpTime)
}

func TestV3Discovery(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 2))
	a := s.Agents()[0]
	g := client(t, a, v3("meshmon", "SHA", "meshmon-auth", "AES", "meshmon-priv"))
	get1(t, g, OIDSysName)
	sp := g.SecurityParameters.(*gosnmp.UsmSecurityParameters)
	if sp.AuthoritativeEngineID != a.EngineID() || sp.AuthoritativeEngineBoots != 1 {
		t.Errorf("discovered engine %x boots %d, want %x boots 1", sp.AuthoritativeEngineID, sp.AuthoritativeEngineBoots, a.EngineID())
	}
	if a.EngineID() == s.Agents()[1].EngineID() {
		t.Error("two agents share an engine ID")
	}
}

// TestLocalizeMatchesGosnmp checks the shortcut key derivation against
// gosnmp's own, for every auth and priv protocol.
func TestLocalizeMatchesGosnmp(t *testing.T) {
	t.Parallel()
	eid := engineID([4]byte{1, 2, 3, 4}, 7)
	for _, an := range meshmon.AuthProtocols {
		ap, _ := snmpv3.AuthProtocol(an)
		for _, pn := range meshmon.PrivProtocols {
			pp, _ := snmpv3.PrivProtocol(pn)
			u := newUSMUser(V3User{Name: "u", AuthProtocol: an, AuthPassword: "auth-pass", PrivProtocol: pn, PrivPassword: "priv-pass"})
			got, err := u.localize(eid)
			if err != nil {
				t.Fatal(err)
			}
			sp := &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: eid, UserName: "u", AuthenticationProtocol: ap,
				AuthenticationPassphrase: "auth-pass", PrivacyProtocol: pp, PrivacyPassphrase: "priv-pass"}
			if err := sp.InitSecurityKeys(); err != nil {
				t.Fatal(err)
			}
			if string(got.auth) != string(sp.SecretKey) || string(got.priv) != string(sp.PrivacyKey) {
				t.Errorf("%s/%s: keys differ from gosnmp's", an, pn)
			}
		}
	}
}
