//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTLSMesh runs a mesh as an MSP would put it on a network: the mesh's
// CA from 'meshmon tls ca', a certificate per peer from 'meshmon tls
// issue', three clustered central peers and two sites, every peer with an
// HTTP monitor. Every port any of these processes listens on (found from
// its sockets in /proc) refuses a plaintext NATS CONNECT and serves no
// plaintext HTTP; the stock nats CLI works with --tlsca and fails without;
// each site's events reach central over its TLS leaf link.
func TestTLSMesh(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	mustRun(t, "tls", "ca", "--dir", caDir)
	caFile := filepath.Join(caDir, "ca.pem")
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(meshPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsArgs := func(name string) []string {
		out := filepath.Join(dir, "certs", name)
		mustRun(t, "tls", "issue", "--ca-dir", caDir, "--name", name, "--host", "127.0.0.1,localhost", "--out-dir", out)
		if fi, err := os.Stat(filepath.Join(out, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key of %s: mode %v (%v), want 0600", name, fi.Mode(), err)
		}
		return []string{"--tls-cert", filepath.Join(out, "cert.pem"), "--tls-key", filepath.Join(out, "key.pem"), "--tls-ca", filepath.Join(out, "ca.pem")}
	}

	var central []*meshPeer
	for i := range 3 {
		central = append(central, &meshPeer{name: fmt.Sprintf("c%d", i+1), client: freePort(t, "tcp"), cluster: freePort(t, "tcp"),
			leaf: freePort(t, "tcp"), dir: filepath.Join(dir, fmt.Sprintf("c%d", i+1))})
	}
	var urls []string
	for _, c := range central {
		c.args = append([]string{"--log-level", peerLogLevel(), "peer", "run", "--role", "central", "--name", c.name,
			"--listen", "127.0.0.1:" + strconv.Itoa(c.client), "--data-dir", c.dir,
			"--cluster-listen", "127.0.0.1:" + strconv.Itoa(c.cluster), "--leaf-listen", "127.0.0.1:" + strconv.Itoa(c.leaf),
			"--leaf-password", meshLeafPassword, "--auth-user", meshUser, "--auth-password-file", pwFile,
			"--http", "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))}, tlsArgs(c.name)...)
		for _, o := range central {
			if o != c {
				c.args = append(c.args, "--routes", "nats-route://127.0.0.1:"+strconv.Itoa(o.cluster))
			}
		}
		urls = append(urls, "tls://127.0.0.1:"+strconv.Itoa(c.client))
	}
	for _, c := range central {
		c.proc = runMeshmon(t, c.name, c.args...)
	}
	for _, c := range central {
		c.proc.waitOutput(`peer \S+ ready on`, peerReady)
	}
	cli := func(args ...string) []string {
		return append([]string{"--server", strings.Join(urls, ","), "--tlsca", caFile, "--user", meshUser, "--password-file", pwFile, "--timeout", "30s"}, args...)
	}
	// All three up: the streams come and scale to three replicas.
	eventually.True(t, 120*time.Second, "3 current replicas of central's EVENTS", func() bool {
		out, _, code := run(t, cli("status", "--json")...)
		var st centralStatus
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		cur := 0
		for _, p := range st.CentralPeers {
			if p.Current {
				cur++
			}
		}
		return cur == 3
	})

	var sites []*meshPeer
	for _, name := range []string{"paris", "lyon"} {
		tok := filepath.Join(dir, name+".token")
		mustRun(t, cli("site", "add", name, "--wait-central", "3", "--token-file", tok)...)
		if _, info, err := bus.ParseJoinToken(string(mustRead(t, tok))); err != nil || info.CA != string(mustRead(t, caFile)) {
			t.Fatalf("the join token of %s does not pin central's CA (%v)", name, err)
		}
		s := &meshPeer{name: name, client: freePort(t, "tcp"), dir: filepath.Join(dir, name)}
		s.args = append([]string{"--log-level", peerLogLevel(), "peer", "run", "--join-file", tok, "--name", name,
			"--listen", "127.0.0.1:" + strconv.Itoa(s.client), "--data-dir", s.dir, "--auth-user", meshUser, "--auth-password-file", pwFile,
			"--http", ":" + strconv.Itoa(freePort(t, "tcp"))}, tlsArgs(name)...)
		s.start(t)
		sites = append(sites, s)
	}

	pool := x509.NewCertPool()
	pem, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("ca: %v", err)
	}
	tc := &tls.Config{RootCAs: pool}
	// Each site publishes an event; central gets both over the leaf links.
	for _, s := range sites {
		nc, err := nats.Connect("tls://127.0.0.1:"+strconv.Itoa(s.client), nats.UserInfo(meshUser, meshPassword), nats.Secure(tc))
		if err != nil {
			t.Fatalf("connect to %s over TLS: %v", s.name, err)
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = js.Publish(ctx, "ev."+s.name+".r1.probe", []byte(`{"id":"`+s.name+`"}`))
		cancel()
		nc.Close()
		if err != nil {
			t.Fatalf("publish at %s: %v", s.name, err)
		}
	}
	cnc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(meshUser, meshPassword), nats.Secure(tc))
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	cjs, _ := jetstream.New(cnc)
	for _, s := range sites {
		eventually.True(t, 120*time.Second, "central to hold "+s.name+"'s event", func() bool {
			n, err := eventCount(cjs, "ev."+s.name+".>")
			return err == nil && n == 1
		})
	}

	// The scan's control: a peer run with --insecure, with the same
	// credentials, is found speaking plaintext on its client port and its
	// monitor.
	plain := &meshPeer{name: "plain", client: freePort(t, "tcp"), dir: filepath.Join(dir, "plain")}
	httpPort := freePort(t, "tcp")
	plain.args = []string{"--log-level", "warn", "peer", "run", "--site", "plain", "--insecure", "--listen", "127.0.0.1:" + strconv.Itoa(plain.client),
		"--data-dir", plain.dir, "--http", ":" + strconv.Itoa(httpPort), "--auth-user", meshUser, "--auth-password-file", pwFile}
	plain.start(t)
	plain.proc.waitOutput(`running with --insecure: every listener is plaintext`, 10*time.Second)
	if err := natsPlaintext("127.0.0.1:" + strconv.Itoa(plain.client)); err != nil {
		t.Fatalf("the scan misses the plaintext client port of an --insecure peer: %v", err)
	}
	if _, err := httpPlaintext("127.0.0.1:" + strconv.Itoa(httpPort)); err != nil {
		t.Fatalf("the scan misses the plaintext monitor of an --insecure peer: %v", err)
	}

	// The scan: every listening port of every process.
	scanned := 0
	for _, p := range append(append([]*meshPeer{}, central...), sites...) {
		ports := listeningPorts(t, p.proc.cmd.Process.Pid)
		if len(ports) == 0 {
			t.Fatalf("%s listens on no port", p.name)
		}
		for _, port := range ports {
			addr := "127.0.0.1:" + strconv.Itoa(port)
			if err := natsPlaintext(addr); err == nil {
				t.Errorf("%s %s: a plaintext NATS CONNECT got PONG", p.name, addr)
			}
			if status, err := httpPlaintext(addr); err == nil {
				t.Errorf("%s %s: a plaintext HTTP GET got %q", p.name, addr, status)
			}
			scanned++
		}
		t.Logf("%s: ports %v speak no plaintext", p.name, ports)
	}
	// 3 central peers x (client, route, leaf, http) + 2 sites x (client, http).
	if scanned < 3*4+2*2 {
		t.Errorf("scanned %d ports, want at least %d", scanned, 3*4+2*2)
	}

	// The stock nats CLI: with --tlsca it works, without it it fails.
	out, err := exec.Command(natsBin, "--server", urls[0], "--tlsca", caFile, "--user", meshUser, "--password", meshPassword, "stream", "ls", "--names").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "EVENTS") {
		t.Fatalf("nats --tlsca stream ls: %v\n%s", err, out)
	}
	if out, err := exec.Command(natsBin, "--server", urls[0], "--user", meshUser, "--password", meshPassword, "--timeout", "3s", "stream", "ls", "--names").CombinedOutput(); err == nil {
		t.Fatalf("nats without --tlsca worked:\n%s", out)
	}
	// The monitor: HTTPS, verified against the CA, with the password.
	var vz struct {
		ServerName string `json:"server_name"`
	}
	if err := monitorGet(tc, sites[0].proc, "/varz", &vz); err != nil || vz.ServerName != "paris" {
		t.Fatalf("monitor of paris: %v (%q)", err, vz.ServerName)
	}
}

// monitorGet reads a monitor endpoint of a peer: its address from the
// peer's own sockets is not known, so it tries each listening port.
func monitorGet(tc *tls.Config, p *proc, path string, v any) error {
	ports := listeningPorts(p.t, p.cmd.Process.Pid)
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	for _, port := range ports {
		req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(port)+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("without the password: %s", resp.Status)
		}
		req.SetBasicAuth(meshUser, meshPassword)
		resp, err = hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("with the password: %s", resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	return fmt.Errorf("no HTTPS port among %v", ports)
}

// listeningPorts lists the TCP ports process pid listens on: the inodes of
// its sockets (/proc/PID/fd) matched with the listening sockets of
// /proc/PID/net/tcp and tcp6.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] { // 0A: LISTEN
				continue
			}
			hexPort := fs[1][strings.LastIndex(fs[1], ":")+1:]
			pb, err := hex.DecodeString(hexPort)
			if err != nil || len(pb) != 2 {
				continue
			}
			ports = append(ports, int(pb[0])<<8|int(pb[1]))
		}
	}
	return ports
}

// natsPlaintext speaks NATS without TLS: nil only if the server answers
// PONG to CONNECT and PING.
func natsPlaintext(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"" + meshUser + "\",\"pass\":\"" + meshPassword + "\"}\r\nPING\r\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("no PONG: %w", err)
		}
		if strings.HasPrefix(line, "PONG") {
			return nil
		}
	}
}

// httpPlaintext sends a plaintext HTTP GET: nil only if an HTTP server
// answers it with anything but the 400 a TLS-only server sends a plaintext
// client.
func httpPlaintext(addr string) (string, error) {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + addr + "/varz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTPS server") {
		return "", fmt.Errorf("TLS only: %s", body)
	}
	return resp.Status, nil
}

// TestTLSOperatorMode: a central in operator mode and a site of a tenant,
// both with certificates of the CA meshmon init made in the key store; 'site add --tenant' pins the CA the command
// verified central with (--tlsca) in the token, the site links over TLS,
// and a poller's event published at the site reaches the tenant's stream
// at central, read with the stock nats CLI and --tlsca.
func TestTLSOperatorMode(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	// meshmon init makes the mesh's CA in the key store.
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
	tb, err := os.ReadFile(token)
	if err != nil {
		t.Fatal(err)
	}
	if _, info, err := bus.ParseJoinToken(string(tb)); err != nil || info.CA != string(mustRead(t, caFile)) {
		t.Fatalf("the join token does not pin the CA (%v)", err)
	}
	sport := freePort(t, "tcp")
	site := runMeshmon(t, "s1", append([]string{"peer", "run", "--role", "site", "--name", "s1-peer", "--join-file", token,
		"--listen", "127.0.0.1:" + strconv.Itoa(sport), "--data-dir", filepath.Join(dir, "s1")}, tlsArgs("s1")...)...)
	site.waitOutput(`peer s1-peer ready`, peerReady)
	creds := func(args ...string) string {
		f := filepath.Join(dir, strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", "acme", "--keys", keys, "--out", f}, args...)...)
		return f
	}
	poller, noc := creds("--role", "poller", "--site", "s1"), creds("--role", "noc")
	surl := "tls://127.0.0.1:" + strconv.Itoa(sport)
	if out, err := exec.Command(natsBin, withInboxPrefix([]string{"--server", surl, "--tlsca", caFile, "--creds", poller, "pub", "ev.s1.d1.trap", "over-tls",
		"-H", "Nats-Msg-Id:tls-1"})...).CombinedOutput(); err != nil {
		t.Fatalf("publish at the site: %v\n%s", err, out)
	}
	eventually.True(t, 90*time.Second, "the event at central", func() bool {
		out, err := exec.Command(natsBin, withInboxPrefix([]string{"--server", curl, "--tlsca", caFile, "--creds", noc, "stream", "info", "EVENTS", "--json"})...).CombinedOutput()
		var info struct {
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
		}
		return err == nil && json.Unmarshal(out, &info) == nil && info.State.Messages == 1
	})
	for _, p := range []*proc{central, site} {
		for _, port := range listeningPorts(t, p.cmd.Process.Pid) {
			if err := natsPlaintext("127.0.0.1:" + strconv.Itoa(port)); err == nil {
				t.Errorf("%s port %d answered a plaintext CONNECT", p.name, port)
			}
		}
	}
}
