package bus

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
)

// joinPrefix marks a join token and its format version.
const joinPrefix = "mmjoin1."

// JoinToken is what `meshmon site add` prints and `meshmon peer run --join`
// takes: the site's name and the JoinInfo, in one line. It holds the
// tenant's leaf credential: treat it as a secret.
func JoinToken(site string, info JoinInfo) string {
	b, _ := json.Marshal(struct {
		Site string `json:"site"`
		JoinInfo
	}{site, info})
	return joinPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseJoinToken reads a token made by JoinToken. It fails with an error
// wrapping ErrInvalidConfig that says what is wrong with it.
func ParseJoinToken(token string) (site string, info JoinInfo, err error) {
	bad := func(why string) error { return fmt.Errorf("%w: join token: %s", ErrInvalidConfig, why) }
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, joinPrefix) {
		return "", JoinInfo{}, bad("does not start with " + joinPrefix + "; copy the whole line 'meshmon site add' printed")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, joinPrefix))
	if err != nil {
		return "", JoinInfo{}, bad("is damaged (not base64url); copy the whole line 'meshmon site add' printed")
	}
	var t struct {
		Site string `json:"site"`
		JoinInfo
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return "", JoinInfo{}, bad("is damaged: " + err.Error())
	}
	if err := meshmon.ValidateName("site", t.Site); err != nil {
		return "", JoinInfo{}, bad(err.Error())
	}
	if len(t.Central) == 0 || (t.Creds == "" && (t.User == "" || t.Password == "")) {
		return "", JoinInfo{}, bad("lacks central's URLs or the leaf credential")
	}
	// A site peer writes these keys unquoted into its server's config
	// text: anything but an account public key could carry config of its
	// own (a listener, the monitoring port, an account with users).
	if t.Account != "" && !nkeys.IsValidPublicAccountKey(t.Account) {
		return "", JoinInfo{}, bad("account is not an account public key")
	}
	if t.SystemAccount != "" && !nkeys.IsValidPublicAccountKey(t.SystemAccount) {
		return "", JoinInfo{}, bad("system account is not an account public key")
	}
	for pub := range t.Preload {
		if !nkeys.IsValidPublicAccountKey(pub) {
			return "", JoinInfo{}, bad("preload key is not an account public key")
		}
	}
	return t.Site, t.JoinInfo, nil
}

// JoinResult is what `meshmon site add` and `site join` print: the site's
// join token and the command that starts its peer with the token read from
// a file (a token in argv is readable by every local user).
type JoinResult struct {
	Result  string   `json:"result"` // added or exists
	Site    string   `json:"site"`
	Token   string   `json:"token"`
	Central []string `json:"central"`
	Command string   `json:"command"`
	// TokenFile is where the token was written, if it was.
	TokenFile string `json:"token_file,omitempty"`
}

// JoinFile is where a site's join token is written when no file is named:
// SITE.token in the working directory, or TENANT-SITE.token for a tenant's
// site (a site may serve several tenants).
func JoinFile(tenant, site string) string {
	if tenant != "" {
		return tenant + "-" + site + ".token"
	}
	return site + ".token"
}

// NewJoinResult is site's token of info, with the command that reads it
// from file (by its base name: the file is copied to the site machine).
func NewJoinResult(result, site string, info JoinInfo, file string) JoinResult {
	const run = "meshmon peer run --role site --data-dir /var/lib/meshmon/peer"
	return JoinResult{Result: result, Site: site, Token: JoinToken(site, info), Central: info.Central, Command: run + " --join-file " + filepath.Base(file)}
}

// WriteText writes the result for people: where the token is and the
// command to run at the site; never the token itself.
func (r JoinResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "site %s %s; central dials nothing: the site peer dials %v\n", r.Site, r.Result, r.Central)
	_, err := fmt.Fprintf(w, "join token written to %s (mode 0600; it holds the tenant's leaf credential: keep it secret).\ncopy it to the site machine and run:\n\n  %s\n",
		r.TokenFile, r.Command)
	return err
}
