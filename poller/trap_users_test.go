package poller

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

func TestParseTrapUsers(t *testing.T) {
	good := `
engine_id: "80:00:1f:88:05:01:02:03:04"
users:
  - name: noc
    auth_protocol: SHA256
    auth_password: auth-pass-1
    priv_protocol: AES
    priv_password: priv-pass-1
  - name: legacy
    auth_protocol: MD5
    auth_password: auth-pass-2
  - name: open
`
	tu, err := ParseTrapUsers([]byte(good))
	if err != nil {
		t.Fatalf("ParseTrapUsers: %v", err)
	}
	if len(tu.Users) != 3 || tu.Users[0].PrivProtocol != "AES" || tu.Users[2].Name != "open" {
		t.Errorf("parsed %+v", tu)
	}
	if id, _ := parseEngineID(tu.EngineID); id != "\x80\x00\x1f\x88\x05\x01\x02\x03\x04" {
		t.Errorf("engine id %x", id)
	}
	if _, err := ParseTrapUsers(nil); err != nil {
		t.Errorf("empty document: %v", err)
	}

	bad := []struct{ name, doc, want string }{
		{"unknown key", "users:\n  - name: a\n    auth_proto: SHA\n", "auth_proto"},
		{"unknown top key", "user: []\n", "user"},
		{"no name", "users:\n  - auth_protocol: SHA\n    auth_password: 12345678\n", "name is empty"},
		{"long name", "users:\n  - name: " + strings.Repeat("a", 33) + "\n", "32 characters"},
		{"unknown auth", "users:\n  - name: a\n    auth_protocol: SHA1\n    auth_password: 12345678\n", "auth_protocol \"SHA1\" is unknown"},
		{"short auth password", "users:\n  - name: a\n    auth_protocol: SHA\n    auth_password: 1234567\n", "at least 8"},
		{"priv without auth", "users:\n  - name: a\n    priv_protocol: AES\n    priv_password: 12345678\n", "auth_protocol is empty"},
		{"unknown priv", "users:\n  - name: a\n    auth_protocol: SHA\n    auth_password: 12345678\n    priv_protocol: 3DES\n    priv_password: 12345678\n", "priv_protocol \"3DES\" is unknown"},
		{"short priv password", "users:\n  - name: a\n    auth_protocol: SHA\n    auth_password: 12345678\n    priv_protocol: AES\n    priv_password: short\n", "priv_password must be at least 8"},
		{"twice", "users:\n  - name: a\n  - name: a\n", "listed twice"},
		{"engine id not hex", "engine_id: xyz\n", "not hex"},
		{"engine id short", "engine_id: 80001f\n", "5 to 32"},
		{"not yaml", "users: [", "yaml"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTrapUsers([]byte(tt.doc))
			if !errors.Is(err, ErrTrapUsers) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want ErrTrapUsers mentioning %q", err, tt.want)
			}
		})
	}
}

func TestLoadTrapUsers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(path, []byte("users:\n  - name: a\n    auth_protocol: SHA\n    auth_password: 12345678\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tu, err := LoadTrapUsers(path)
	if err != nil || len(tu.Users) != 1 {
		t.Fatalf("LoadTrapUsers: %+v, %v", tu, err)
	}
	if open, _, err := TrapUsersFileMode(path); err != nil || !open {
		t.Errorf("mode 0644: open %v, err %v; want open", open, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if open, _, err := TrapUsersFileMode(path); err != nil || open {
		t.Errorf("mode 0600: open %v, err %v; want not open", open, err)
	}
	if _, err := LoadTrapUsers(filepath.Join(dir, "missing.yaml")); !errors.Is(err, ErrTrapUsers) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaultTrapEngineID(t *testing.T) {
	a := DefaultTrapEngineID("t", "s", "p1")
	if a != DefaultTrapEngineID("t", "s", "p1") || a == DefaultTrapEngineID("t", "s", "p2") || a == DefaultTrapEngineID("t", "s2", "p1") {
		t.Error("engine id is not a stable function of tenant, site and name")
	}
	if len(a) != 13 || a[0]&0x80 == 0 {
		t.Errorf("engine id %x is not an RFC 3411 format 5 id", a)
	}
}

// TestTrapV3InformTimeWindow: an inform with a stale engine time is
// dropped and answered with an authenticated notInTimeWindow report that
// carries the listener's clock.
func TestTrapV3InformTimeWindow(t *testing.T) {
	now := fuzzStart
	l := NewTrapListener("127.0.0.1:0", nil, nil)
	if err := l.SetV3(testTrapUsers, DefaultTrapEngineID("t", "s", "p"), func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	boots, etime := l.usm.clock()
	if etime != 3600 {
		t.Fatalf("engine time %d after an hour", etime)
	}
	u := testTrapUsers.Users[3] // SHA, AES
	vars := linkDownVars(5)
	for _, tt := range []struct {
		name         string
		boots, etime uint32
		want         dropReason
	}{
		{"in window", boots, etime - 100, dropNone},
		{"stale", boots, etime - 200, dropTimeWindow},
		{"ahead", boots, etime + 200, dropTimeWindow},
		{"other boots", boots - 1, etime, dropTimeWindow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := v3Seed(t, u, l.EngineID(), tt.boots, tt.etime, gosnmp.AuthPriv|gosnmp.Reportable, gosnmp.InformRequest, vars)
			d := l.decode(msg, nil)
			if d.reason != tt.want {
				t.Fatalf("reason %s, want %s", dropNames[d.reason], dropNames[tt.want])
			}
			if tt.want == dropNone {
				if d.ack == nil {
					t.Fatal("inform in the window without an acknowledgement")
				}
				return
			}
			// The report is authenticated with the user's key and carries the clock.
			dec := &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthNoPriv,
				SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: u.Name, AuthenticationProtocol: gosnmp.SHA,
					AuthenticationPassphrase: u.AuthPassword, PrivacyProtocol: gosnmp.NoPriv}}
			rep, err := dec.UnmarshalTrap(d.reply, false)
			if err != nil {
				t.Fatalf("report: %v", err)
			}
			sp := rep.SecurityParameters.(*gosnmp.UsmSecurityParameters)
			if rep.PDUType != gosnmp.Report || rep.Variables[0].Name != oidUsmStatsNotInTimeWindows ||
				sp.AuthoritativeEngineBoots != boots || sp.AuthoritativeEngineTime != etime {
				t.Errorf("report %v %+v boots %d time %d", rep.PDUType, rep.Variables, sp.AuthoritativeEngineBoots, sp.AuthoritativeEngineTime)
			}
		})
	}
	// An inform for another engine is dropped.
	msg := v3Seed(t, u, senderEngineID, boots, etime, gosnmp.AuthPriv|gosnmp.Reportable, gosnmp.InformRequest, vars)
	if d := l.decode(msg, nil); d.reason != dropUnknownEngine || d.reply == nil {
		t.Errorf("inform to another engine: reason %s, reply %d bytes", dropNames[d.reason], len(d.reply))
	}
}

// FuzzParseTrapUsers: the trap users file parser never panics, and what it
// accepts is valid.
func FuzzParseTrapUsers(f *testing.F) {
	f.Add([]byte("users:\n  - name: noc\n    auth_protocol: SHA256\n    auth_password: auth-pass-1\n    priv_protocol: AES\n    priv_password: priv-pass-1\n"))
	f.Add([]byte("engine_id: 80001f880501020304\nusers:\n  - name: a\n"))
	f.Add([]byte("users: [{name: a, auth_protocol: MD5, auth_password: 12345678}]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, doc []byte) {
		tu, err := ParseTrapUsers(doc)
		if err != nil {
			if !errors.Is(err, ErrTrapUsers) {
				t.Fatalf("error does not wrap ErrTrapUsers: %v", err)
			}
			return
		}
		if err := tu.Validate(); err != nil {
			t.Fatalf("accepted a document that does not validate: %v", err)
		}
	})
}
