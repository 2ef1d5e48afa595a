package peer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshmon/meshmon/tenancy"
)

// FuzzReadTrust reads a trust file (meshmon init's trust.json, copied to
// every central peer) and turns it into server options as an operator-mode
// peer does at start. A file it accepts sets the operator, the system
// account and the preloaded accounts and nothing else: no other server
// option (listen address, monitoring port, accounts, users) can be slipped
// in through it. Errors name the file.
func FuzzReadTrust(f *testing.F) {
	st, err := tenancy.Init(filepath.Join(f.TempDir(), "keys"), "fuzz-op")
	if err != nil {
		f.Fatal(err)
	}
	tr, err := st.Trust()
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(tr)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"operator":"x","system_account":"y"}`))
	f.Add([]byte(`{"operator":"` + tr.Operator + `","system_account":"` + tr.SystemAccount + `","preload":{}}`))
	f.Add([]byte(`{"operator":"","system_account":"","bogus":1}`))

	dir := f.TempDir()
	path := filepath.Join(dir, "trust.json")
	optionsOf := func(t *testing.T, c Config) (*server.Options, error) {
		o := &server.Options{}
		err := c.operatorOptions(o)
		if o.AccountResolver != nil {
			o.AccountResolver.Close()
			o.AccountResolver = nil
		}
		return o, err
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadTrust(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		c := Config{Trust: path, DataDir: filepath.Join(dir, "data")}
		o, err := optionsOf(t, c)
		if err != nil {
			return // the server's own checks refused it
		}
		// The same operator and system account, written by the test with
		// nothing preloaded, is what every other option must look like.
		ref, _ := json.Marshal(tenancy.Trust{Operator: got.Operator, SystemAccount: got.SystemAccount})
		refPath := filepath.Join(dir, "ref.json")
		if err := os.WriteFile(refPath, ref, 0o600); err != nil {
			t.Fatal(err)
		}
		want, err := optionsOf(t, Config{Trust: refPath, DataDir: c.DataDir})
		if err != nil {
			t.Fatalf("the operator and system account alone are refused: %v", err)
		}
		ov, wv := reflect.ValueOf(o).Elem(), reflect.ValueOf(want).Elem()
		for i := 0; i < ov.NumField(); i++ {
			field := ov.Type().Field(i)
			if !field.IsExported() {
				continue
			}
			if !reflect.DeepEqual(ov.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Fatalf("the trust file set server option %s: %v", field.Name, ov.Field(i).Interface())
			}
		}
	})
}
