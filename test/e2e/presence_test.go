//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/internal/eventually"
)

// TestPollerGroupPresence runs two real pollers of a site in operator mode,
// with credentials from 'tenant creds', and a member timeout of ten
// minutes: a poller SIGKILLed, the leader first, then the other after it
// restarts, has its devices taken by the other within seconds, found by
// the presence probe (its connection closed), not by the member timeout.
// The poller credentials may answer and ask the probes.
func TestPollerGroupPresence(t *testing.T) {
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	token := filepath.Join(dir, "hq.token")
	cli("site", "add", "hq", "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
	port := freePort(t, "tcp")
	site := runMeshmon(t, "hq", "peer", "run", "--role", "site", "--name", "hq-peer", "--join-file", token,
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, "hq"))
	site.waitOutput(`peer hq-peer ready`, peerReady)
	hqURL := "nats://127.0.0.1:" + strconv.Itoa(port)
	creds := map[string]string{}
	for _, u := range [][]string{{"admin", "admin", ""}, {"p1", "poller", "hq"}, {"p2", "poller", "hq"}} {
		f := filepath.Join(dir, u[0]+".creds")
		args := []string{"tenant", "creds", "acme", "--keys", keys, "--role", u[1], "--user", u[0], "--out", f}
		if u[2] != "" {
			args = append(args, "--site", u[2])
		}
		cli(args...)
		creds[u[0]] = f
	}
	sm := startSim(t, "pr", "127.84.0.1", 6)
	for _, a := range sm.Agents() {
		eventually.True(t, 30*time.Second, "device add "+a.Name(), func() bool {
			_, _, code := run(t, "--server", hqURL, "--creds", creds["admin"], "device", "add", a.Name(), "--address", a.Addr().Addr().String(),
				"--checks", "snmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())), "--interval", "1s")
			return code == 0
		})
	}
	const memberTimeout = 10 * time.Minute // the test never waits for it
	pollers := map[string]*proc{}
	startPoller := func(name string) {
		pollers[name] = runMeshmon(t, "poller-"+name, "--server", hqURL, "--creds", creds[name], "poller", "run",
			"--data-dir", filepath.Join(dir, name), "--member-timeout", memberTimeout.String())
		pollers[name].waitOutput(`poller started`, 30*time.Second)
	}
	startPoller("p1")
	startPoller("p2")
	var st groupStatus
	status := func() groupStatus {
		var st groupStatus
		out, _, code := run(t, "--server", hqURL, "--creds", creds["admin"], "status", "--json")
		if code == 0 {
			_ = json.Unmarshal([]byte(out), &st)
		}
		return st
	}
	// inGroup waits until the assignment counts exactly live, with every
	// device assigned.
	inGroup := func(step string, live ...string) {
		t.Helper()
		eventually.True(t, 60*time.Second, step, func() bool {
			st = status()
			var in []string
			for _, m := range st.Group.Members {
				if m.InGroup {
					in = append(in, m.Name)
				}
			}
			slices.Sort(in)
			return slices.Equal(in, live) && st.Group.Unassigned == 0 && st.Group.Assigned == 6 && slices.Contains(live, st.Group.Leader)
		})
	}
	inGroup("both pollers in the group", "p1", "p2")

	for range 2 {
		victim, other := st.Group.Leader, "p1"
		if victim == "p1" {
			other = "p2"
		}
		killed := time.Now()
		pollers[victim].kill()
		inGroup(victim+" (SIGKILLed) out of the group, long before the member timeout", other)
		pollers[other].waitOutput(`a member's connection is closed`, 5*time.Second)
		t.Logf("%s SIGKILLed: %s had all the devices %s after the kill, by its log (member timeout %s)", victim, other,
			firstLogAfter(t, pollers[other], `msg=assignment poller=`+other+` .*devices=6 members=1`, killed), memberTimeout)
		startPoller(victim)
		inGroup(victim+" back in the group", "p1", "p2")
	}
}

// firstLogAfter is how long after since p first logged a line matching re
// (its logfmt time=), or -1 if it did not.
func firstLogAfter(t *testing.T, p *proc, re string, since time.Time) time.Duration {
	t.Helper()
	rx := regexp.MustCompile(`^time=(\S+) .*` + re)
	for _, line := range strings.Split(p.out.String(), "\n") {
		m := rx.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.After(since) {
			return at.Sub(since).Round(time.Millisecond)
		}
	}
	return -1
}
