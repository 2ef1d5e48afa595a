//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestTamperedJoinToken runs a central peer in operator mode with TLS and
// starts a site peer, a real process, with join tokens of 'site add'
// tampered with as an attacker or a bad copy would: a flipped character
// in a credential's JWT, its signature, its seed or the account JWT,
// another pinned CA or none, a central URL that is not central's leaf
// port, the token cut short. What the token's own checks can tell fails
// at once with one line naming it; the rest start and do not link, with a
// log line that says why. Central hears from none of them and stores
// nothing of theirs; the untampered token then links and its event is the
// only one central holds.
func TestTamperedJoinToken(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	mustRun(t, "init", "--keys", keys)
	caDir := filepath.Join(keys, "ca")
	caFile := filepath.Join(caDir, "ca.pem")
	tlsArgs := func(name string) []string {
		out := filepath.Join(dir, "certs", name)
		mustRun(t, "tls", "issue", "--ca-dir", caDir, "--name", name, "--host", "127.0.0.1", "--out-dir", out)
		return []string{"--tls-cert", filepath.Join(out, "cert.pem"), "--tls-key", filepath.Join(out, "key.pem"), "--tls-ca", filepath.Join(out, "ca.pem")}
	}
	cport, lport := freePort(t, "tcp"), freePort(t, "tcp")
	curl := "tls://127.0.0.1:" + strconv.Itoa(cport)
	central := runMeshmon(t, "central", append([]string{"peer", "run", "--role", "central", "--name", "c1", "--trust", filepath.Join(keys, "trust.json"),
		"--listen", "127.0.0.1:" + strconv.Itoa(cport), "--leaf-listen", "127.0.0.1:" + strconv.Itoa(lport), "--data-dir", filepath.Join(dir, "c1")}, tlsArgs("c1")...)...)
	central.waitOutput(`peer c1 ready`, peerReady)
	cli := func(args ...string) string {
		return mustRun(t, append([]string{"--server", curl, "--tlsca", caFile}, args...)...)
	}
	cli("tenant", "create", "acme", "--keys", keys)
	token := filepath.Join(dir, "s1.token")
	cli("site", "add", "s1", "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
	poller, noc := filepath.Join(dir, "p1.creds"), filepath.Join(dir, "noc.creds")
	cli("tenant", "creds", "acme", "--keys", keys, "--role", "poller", "--site", "s1", "--user", "p1", "--out", poller)
	cli("tenant", "creds", "acme", "--keys", keys, "--role", "noc", "--user", "noc", "--out", noc)
	good := strings.TrimSpace(readFile(t, token))
	site, info, err := bus.ParseJoinToken(good)
	if err != nil {
		t.Fatal(err)
	}
	siteTLS := tlsArgs("s1")
	otherCA := filepath.Join(dir, "other-ca")
	mustRun(t, "tls", "ca", "--dir", otherCA)
	otherCerts := filepath.Join(dir, "certs", "other")
	mustRun(t, "tls", "issue", "--ca-dir", otherCA, "--name", "s1", "--host", "127.0.0.1", "--out-dir", otherCerts)
	impostor, impostorPort := impostorLeafListener(t, otherCerts)
	otherTLS := []string{"--tls-cert", filepath.Join(otherCerts, "cert.pem"), "--tls-key", filepath.Join(otherCerts, "key.pem"), "--tls-ca", filepath.Join(otherCerts, "ca.pem")}

	// flip changes the character of s at i to another of base64url's.
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	// flipJWT flips a character in the middle of part (1 the claims, 2
	// the signature) of a JWT.
	flipJWT := func(tok string, part int) string {
		p := strings.Split(tok, ".")
		p[part] = flip(p[part], len(p[part])/2)
		return strings.Join(p, ".")
	}
	// flipCreds flips a character of the JWT's part in a .creds file's
	// content, or of its seed (part -1).
	flipCreds := func(creds string, part int) string {
		tok, err := jwt.ParseDecoratedJWT([]byte(creds))
		if err != nil {
			t.Fatal(err)
		}
		if part >= 0 {
			return strings.Replace(creds, tok, flipJWT(tok, part), 1)
		}
		seed := regexp.MustCompile(`(?m)^SU[A-Z2-7]+$`).FindStringIndex(creds)
		if seed == nil {
			t.Fatal("no seed in the leaf credential")
		}
		return flip(creds, (seed[0]+seed[1])/2)
	}
	with := func(f func(*bus.JoinInfo)) string {
		i := info
		f(&i)
		return bus.JoinToken(site, i)
	}
	for _, c := range []struct {
		what  string
		token string
		// fails is the one line the peer exits with; links, when the
		// peer starts, the log line that says why it does not link.
		fails, links string
		tls          []string // the site's certificate, if not of the mesh's CA
	}{
		// A character of the claims may break their JSON or their
		// signature, depending on where it falls.
		{what: "leaf JWT claims", token: with(func(i *bus.JoinInfo) { i.Creds = flipCreds(i.Creds, 1) }),
			fails: `^meshmon: invalid peer config: tenant acme: leaf credentials: `},
		{what: "leaf JWT signature", token: with(func(i *bus.JoinInfo) { i.Creds = flipCreds(i.Creds, 2) }),
			fails: `^meshmon: invalid peer config: tenant acme: leaf credentials: .*signature verification`},
		{what: "leaf seed", token: with(func(i *bus.JoinInfo) { i.Creds = flipCreds(i.Creds, -1) }),
			fails: `^meshmon: invalid peer config: tenant acme: leaf credentials: nkeys: `},
		{what: "upkeep JWT signature", token: with(func(i *bus.JoinInfo) { i.UpkeepCreds = flipCreds(i.UpkeepCreds, 2) }),
			fails: `^meshmon: invalid peer config: tenant acme: upkeep credentials: .*signature verification`},
		{what: "account JWT signature", token: with(func(i *bus.JoinInfo) { i.AccountJWT = flipJWT(i.AccountJWT, 2) }),
			fails: `^meshmon: invalid peer config: tenant acme: the account JWT is damaged or not the tenant's`},
		{what: "CA not PEM", token: with(func(i *bus.JoinInfo) { i.CA = "not a certificate" }),
			fails: `^meshmon: invalid peer config: central's CA \(from the join token\): `},
		{what: "no central", token: with(func(i *bus.JoinInfo) { i.Central = nil }), fails: `^meshmon: --join-file \S+\.token: invalid config: join token: lacks central's URLs`},
		{what: "central not a URL", token: with(func(i *bus.JoinInfo) { i.Central = []string{"%zz:1"} }), fails: `^meshmon: invalid peer config: central "%zz:1": want nats-leaf://host:port$`},
		{what: "central of another scheme", token: with(func(i *bus.JoinInfo) { i.Central = []string{"https://127.0.0.1:" + strconv.Itoa(lport)} }), fails: `^meshmon: invalid peer config: central "https://127.0.0.1:\d+": scheme "https" is not one of`},
		{what: "truncated", token: good[:len(good)/2], fails: `^meshmon: --join-file \S+\.token: invalid config: join token: is damaged`},
		{what: "truncated by one", token: good[:len(good)-1], fails: `^meshmon: --join-file \S+\.token: invalid config: join token: is damaged`},
		{what: "another CA", token: with(func(i *bus.JoinInfo) { i.CA = readFile(t, filepath.Join(otherCA, "ca.pem")) }),
			links: `TLS leafnode handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		// Without a CA in the token the site verifies central against
		// its own --tls-ca: one of another CA does not link either.
		{what: "no CA", token: with(func(i *bus.JoinInfo) { i.CA = "" }), tls: otherTLS,
			links: `TLS leafnode handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		{what: "no central there", token: with(func(i *bus.JoinInfo) {
			i.Central = []string{"nats-leaf://127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))}
		}),
			links: `Error trying to connect as leafnode to remote server .*connection refused`},
		{what: "an impostor's leaf port", token: with(func(i *bus.JoinInfo) { i.Central = []string{"nats-leaf://127.0.0.1:" + strconv.Itoa(impostorPort)} }),
			links: `TLS leafnode handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		{what: "central's client port", token: with(func(i *bus.JoinInfo) { i.Central = []string{"nats-leaf://127.0.0.1:" + strconv.Itoa(cport)} }),
			links: `attempted to connect to wrong port`},
	} {
		name := strings.ReplaceAll(c.what, " ", "-")
		file := filepath.Join(dir, name+".token")
		if err := os.WriteFile(file, []byte(c.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sport := freePort(t, "tcp")
		tlsFiles, tlsca := siteTLS, caFile
		if c.tls != nil {
			tlsFiles, tlsca = c.tls, filepath.Join(otherCerts, "ca.pem")
		}
		p := runMeshmon(t, "site with "+c.what, append([]string{"peer", "run", "--role", "site", "--name", "s1-peer", "--join-file", file,
			"--listen", "127.0.0.1:" + strconv.Itoa(sport), "--data-dir", filepath.Join(dir, "site-"+name)}, tlsFiles...)...)
		if c.fails != "" {
			eventually.True(t, 20*time.Second, "the site with "+c.what+" to exit", func() bool {
				select {
				case <-p.done:
					return true
				default:
					return false
				}
			})
			out := strings.TrimSpace(p.out.String())
			if p.err == nil || strings.Contains(out, "\n") || !regexp.MustCompile(c.fails).MatchString(out) {
				t.Errorf("the site with %s: exit %v, want one line matching %q:\n%s", c.what, p.err, c.fails, tail(out, 20))
			}
			continue
		}
		p.waitOutput(c.links, 20*time.Second)
		p.waitOutput(`peer s1-peer ready`, 20*time.Second)
		// What it stores does not reach central.
		if out, ok := natsCLI(t, natsBin, "--server", "tls://127.0.0.1:"+strconv.Itoa(sport), "--tlsca", tlsca, "--creds", poller,
			"pub", "ev.s1.d1.trap", "tampered-"+name, "-H", "Nats-Msg-Id:"+name, "--jetstream"); !ok {
			t.Errorf("publish at the site with %s: %s", c.what, tail(out, 5))
		}
		p.kill()
	}
	if n := impostor.NumLeafNodes(); n != 0 {
		t.Errorf("the impostor holds %d leaf links", n)
	}
	var links []bus.SiteLink
	if err := json.Unmarshal([]byte(cli("site", "list", "--tenant", "acme", "--keys", keys, "--json")), &links); err != nil || len(links) != 1 {
		t.Fatalf("site list: %v %v", links, err)
	}
	if l := links[0]; l.Up || l.SinceContact >= 0 {
		t.Errorf("central heard from a site with a tampered token: %+v", l)
	}

	// The token as 'site add' wrote it links, and its event is all
	// central holds.
	sport := freePort(t, "tcp")
	p := runMeshmon(t, "site", append([]string{"peer", "run", "--role", "site", "--name", "s1-peer", "--join-file", token,
		"--listen", "127.0.0.1:" + strconv.Itoa(sport), "--data-dir", filepath.Join(dir, "site")}, siteTLS...)...)
	p.waitOutput(`peer s1-peer ready`, peerReady)
	if out, ok := natsCLI(t, natsBin, "--server", "tls://127.0.0.1:"+strconv.Itoa(sport), "--tlsca", caFile, "--creds", poller,
		"pub", "ev.s1.d1.trap", "untampered", "-H", "Nats-Msg-Id:untampered", "--jetstream"); !ok {
		t.Fatalf("publish at the site: %s", tail(out, 5))
	}
	published := time.Now()
	eventually.True(t, 90*time.Second, "the site's event at central", func() bool {
		out, ok := natsCLI(t, natsBin, "--server", curl, "--tlsca", caFile, "--creds", noc, "stream", "subjects", "EVENTS", "--json")
		var subjects map[string]int
		if !ok || json.Unmarshal([]byte(out), &subjects) != nil {
			return false
		}
		return subjects["ev.s1.d1.trap"] >= 1
	})
	t.Logf("the site's event at central %s after it was published", time.Since(published).Round(time.Millisecond))
	out, ok := natsCLI(t, natsBin, "--server", curl, "--tlsca", caFile, "--creds", noc, "stream", "get", "EVENTS", "1")
	if !ok || !strings.Contains(out, "untampered") {
		t.Errorf("central's first event: %s", out)
	}
	if out, ok := natsCLI(t, natsBin, "--server", curl, "--tlsca", caFile, "--creds", noc, "stream", "info", "EVENTS", "--json"); !ok || !strings.Contains(out, `"messages": 1,`) {
		t.Errorf("central's EVENTS holds more than the untampered site's event: %s", out)
	}
}

// impostorLeafListener runs a stock nats-server in this process that takes
// leaf links over TLS with the certificate in certDir (cert.pem, key.pem,
// ca.pem): a server that is not central at a URL a token could name.
func impostorLeafListener(t *testing.T, certDir string) (*server.Server, int) {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: filepath.Join(certDir, "cert.pem"), KeyFile: filepath.Join(certDir, "key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "tcp")
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: "impostor"}
	opts.LeafNode.Host, opts.LeafNode.Port, opts.LeafNode.TLSConfig = "127.0.0.1", port, tc
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("impostor not ready")
	}
	return srv, port
}
