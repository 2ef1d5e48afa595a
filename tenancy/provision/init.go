package provision

import (
	"encoding/json"
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
