package meshmon_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

func TestTaskRequestValidate(t *testing.T) {
	ok := meshmon.TaskRequest{ID: "abc-1", Site: "hq"}
	cases := []struct {
		name string
		edit func(*meshmon.TaskRequest)
		want string // "" valid, else a part of the error
	}{
		{"poll-now", func(r *meshmon.TaskRequest) { r.Verb, r.Device = meshmon.TaskPollNow, "sw1" }, ""},
		{"poll-now without device", func(r *meshmon.TaskRequest) { r.Verb = meshmon.TaskPollNow }, "device"},
		{"walk", func(r *meshmon.TaskRequest) {
			r.Verb, r.Device, r.OIDs = meshmon.TaskWalk, "sw1", []string{".1.3.6.1.2.1.1"}
		}, ""},
		{"walk of two OIDs", func(r *meshmon.TaskRequest) {
			r.Verb, r.Device, r.OIDs = meshmon.TaskWalk, "sw1", []string{"1.3", "1.4"}
		}, "exactly 1"},
		{"walk of a name", func(r *meshmon.TaskRequest) { r.Verb, r.Device, r.OIDs = meshmon.TaskWalk, "sw1", []string{"sysName"} }, "not numeric"},
		{"snmp-get", func(r *meshmon.TaskRequest) {
			r.Verb, r.Address, r.OIDs = meshmon.TaskSNMPGet, "192.0.2.1", []string{"1.3.6.1.2.1.1.5.0"}
		}, ""},
		{"snmp-get without OID", func(r *meshmon.TaskRequest) { r.Verb, r.Address = meshmon.TaskSNMPGet, "192.0.2.1" }, "no OID"},
		{"ping without address", func(r *meshmon.TaskRequest) { r.Verb = meshmon.TaskPing }, "address is empty"},
		{"discover a /22", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR = meshmon.TaskDiscover, "10.0.0.0/22" }, ""},
		{"discover a /21", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR = meshmon.TaskDiscover, "10.0.0.0/21" }, "--allow-large"},
		{"discover a /21, allowed", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR, r.AllowLarge = meshmon.TaskDiscover, "10.0.0.0/21", true }, ""},
		{"discover a /15", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR, r.AllowLarge = meshmon.TaskDiscover, "10.0.0.0/15", true }, "a /16"},
		{"discover IPv6", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR = meshmon.TaskDiscover, "2001:db8::/120" }, "IPv4"},
		{"discover too fast", func(r *meshmon.TaskRequest) { r.Verb, r.CIDR, r.Rate = meshmon.TaskDiscover, "10.0.0.0/24", 1e6 }, "rate"},
		{"unknown verb", func(r *meshmon.TaskRequest) { r.Verb = "reboot" }, "use one of"},
		{"bad site", func(r *meshmon.TaskRequest) { r.Verb, r.Site, r.Address = meshmon.TaskPing, "h.q", "x" }, "site"},
		{"id with a dot", func(r *meshmon.TaskRequest) { r.Verb, r.ID, r.Address = meshmon.TaskPing, "a.b", "x" }, "task id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			c.edit(&r)
			err := r.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid request refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestDiscoverAddrs(t *testing.T) {
	for _, c := range []struct {
		cidr  string
		n     int
		first string
	}{{"192.0.2.0/24", 254, "192.0.2.1"}, {"192.0.2.7/32", 1, "192.0.2.7"}, {"192.0.2.4/31", 2, "192.0.2.4"}, {"10.0.0.0/22", 1022, "10.0.0.1"}} {
		p, err := meshmon.DiscoverPrefix(c.cidr, false)
		if err != nil {
			t.Fatal(err)
		}
		got := meshmon.DiscoverAddrs(p)
		if len(got) != c.n || got[0] != netip.MustParseAddr(c.first) {
			t.Errorf("%s: %d addresses from %s, want %d from %s", c.cidr, len(got), got[0], c.n, c.first)
		}
	}
}

func TestCandidateName(t *testing.T) {
	for _, c := range []struct{ sysName, addr, want string }{
		{"Core-SW1.example.net", "192.0.2.1", "core-sw1"},
		{"", "192.0.2.7", "ip-192-0-2-7"},
		{"bad name!", "192.0.2.8", "ip-192-0-2-8"},
	} {
		if got := meshmon.CandidateName(meshmon.Candidate{SysName: c.sysName, Address: c.addr}); got != c.want {
			t.Errorf("CandidateName(%q, %s) = %q, want %q", c.sysName, c.addr, got, c.want)
		}
	}
}

// TestTaskRequester: the requester comes from the subject's realm and
// user tokens; anything else is no request.
func TestTaskRequester(t *testing.T) {
	for _, c := range []struct{ subject, want string }{
		{meshmon.TaskSubject("hq", "ann", meshmon.TaskPing), "ann"},
		{meshmon.TaskOpsSubject("hq", "olga", meshmon.TaskWalk), "ops:olga"},
		{"ctl.hq.ping", ""},
		{"ctl.hq.reply.x", ""},
		{"ctl.hq.admin.ann.ping", ""},
		{"ctl.hq.req.Ann.ping", ""},
		{"mx.hq.req.ann.ping", ""},
	} {
		got, err := meshmon.TaskRequester(c.subject)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("TaskRequester(%q) = %q, %v; want %q", c.subject, got, err, c.want)
		}
	}
	if got := meshmon.TaskReplySubjectBy("hq", "ops:olga", "x1"); got != "ctl.hq.reply.ops.olga.x1" {
		t.Errorf("an ops user's replies on %s", got)
	}
	if got := meshmon.TaskReplySubjectBy("hq", "ann", "x1"); got != meshmon.TaskReplySubject("hq", "x1") {
		t.Errorf("a tenant user's replies on %s", got)
	}
}
