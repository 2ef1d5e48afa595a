package bus

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
