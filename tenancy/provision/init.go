package provision

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/meshmon/meshmon/pki"
	"github.com/meshmon/meshmon/tenancy"
)

// Initialized is what Init made.
type Initialized struct {
	Store     *tenancy.Store
	Trust     tenancy.Trust
	TrustFile string // dir/trust.json: central peers run with it (it holds no key)
	CAFile    string // the mesh's CA certificate, in dir/ca
}

// Report is what 'meshmon init --json' prints of in, whose store is in dir.
func (in Initialized) Report(dir string) map[string]string {
	return map[string]string{"result": "created", "keys": dir, "trust": in.TrustFile, "system_account": in.Trust.SystemAccount, "ca": in.CAFile}
}

// WriteText writes what 'meshmon init' prints: where things are and the
// next steps.
func (in Initialized) WriteText(w io.Writer, dir string) error {
	_, err := fmt.Fprintf(w, "key store created in %s (keep it private: it signs every tenant)\n"+
		"the mesh's CA is %s: 'meshmon tls issue --ca-dir %s ...' issues each peer's certificate\n"+
		"central peers run with the trust file, which holds no key:\n\n  meshmon peer run --role central --trust %s ...\n\n"+
		"then: meshmon tenant create NAME --keys %s --server URL\n", dir, in.CAFile, filepath.Join(dir, "ca"), in.TrustFile, dir)
	return err
}

// Init makes a key store in dir with operator's keys and the system and
// ops accounts (tenancy.Init: an error wrapping tenancy.ErrExists if there
// is one), writes the trust file central peers run with as
// dir/trust.json, and makes the mesh's CA in dir/ca.
func Init(dir, operator string) (Initialized, error) {
	st, err := tenancy.Init(dir, operator)
	if err != nil {
		return Initialized{}, err
	}
	out := Initialized{Store: st, TrustFile: filepath.Join(dir, "trust.json")}
	if out.Trust, err = st.Trust(); err != nil {
		return out, err
	}
	b, err := json.MarshalIndent(out.Trust, "", "  ")
	if err != nil {
		return out, err
	}
	if err := os.WriteFile(out.TrustFile, append(b, '\n'), 0o644); err != nil {
		return out, err
	}
	out.CAFile, err = pki.InitCA(filepath.Join(dir, "ca"), "meshmon mesh CA", time.Now())
	return out, err
}
