package meshmon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Tasks are what an operator at central asks a site's pollers to do now,
// over the link the site dialled: request/reply on ctl.<site>.<verb> in the
// tenant's account (docs/tasks.md).

// Task verbs. A device verb is answered by the poller that owns the device
// (the others stay silent); a site verb by any one poller of the site.
const (
	TaskPollNow  = "poll-now" // device: poll now, return the fresh readings
	TaskWalk     = "walk"     // device: SNMP walk of an OID, streamed
	TaskPing     = "ping"     // site: ICMP echo to an address
	TaskSNMPGet  = "snmp-get" // site: SNMP GET of OIDs at an address
	TaskDiscover = "discover" // site: ICMP sweep of a CIDR, then SNMP
	// TaskWhois asks any poller of the site who owns a device: the first
	// step of a device task, which tells an offline site from a device
	// nobody owns.
	TaskWhois = "whois"
	// TaskCancel stops a running task (TaskRequest.ID) at the site.
	TaskCancel = "cancel"
)

// TaskVerbs are the verbs an operator runs.
var TaskVerbs = []string{TaskPollNow, TaskWalk, TaskPing, TaskSNMPGet, TaskDiscover}

// IsDeviceTask reports whether verb is answered by the device's owner.
func IsDeviceTask(verb string) bool { return verb == TaskPollNow || verb == TaskWalk }

// KindTask is the event kind of a task's audit record.
const KindTask = "task"

// SiteTaskDevice is the device token of the audit events of site tasks
// (ev.<site>._site.task): no device name can take it, names begin with a
// letter or digit.
const SiteTaskDevice = "_site"

// TaskSubject returns the subject of user's requests of verb at site:
// ctl.<site>.req.<user>.<verb>. The user is in the subject so that the
// site can take the requester from it: a tenant user's permissions allow
// its own name only (tenancy), so the name is the credential's, not what
// the requester says.
func TaskSubject(site, user, verb string) string {
	return "ctl." + site + "." + TaskRealmTenant + "." + user + "." + verb
}

// TaskOpsSubject is TaskSubject for a user of the ops (MSP operator)
// account: ctl.<site>.ops.<user>.<verb> in the tenant's account, where the
// ops account's import of the tenant's tasks maps its own subject.
func TaskOpsSubject(site, user, verb string) string {
	return "ctl." + site + "." + TaskRealmOps + "." + user + "." + verb
}

// Task request realms: the third token of a request's subject, which says
// whose user the fourth names.
const (
	TaskRealmTenant = "req" // a user of the tenant's account
	TaskRealmOps    = "ops" // a user of the ops account
)

// TaskVerbSubject is what a site's pollers subscribe to for verb:
// every realm's and user's requests, ctl.<site>.*.*.<verb>.
func TaskVerbSubject(site, verb string) string { return "ctl." + site + ".*.*." + verb }

// TaskRequester reads who sent a request from its subject (TaskSubject,
// TaskOpsSubject): the user for a tenant's user, "ops:<user>" for a user
// of the ops account. It fails on a subject of another form.
func TaskRequester(subject string) (string, error) {
	tok := strings.Split(subject, ".")
	if len(tok) != 5 || tok[0] != "ctl" {
		return "", fmt.Errorf("subject %q is not a task request (ctl.<site>.<realm>.<user>.<verb>)", subject)
	}
	if err := ValidateName("user", tok[3]); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	switch tok[2] {
	case TaskRealmTenant:
		return tok[3], nil
	case TaskRealmOps:
		return TaskRealmOps + ":" + tok[3], nil
	}
	return "", fmt.Errorf("subject %q: realm %q: use %s or %s", subject, tok[2], TaskRealmTenant, TaskRealmOps)
}

// TaskReplySubjectBy returns the subject of the replies of task id at
// site for its requester by (TaskRequester): TaskReplySubject for a
// tenant's user, ctl.<site>.reply.ops.<user>.<id> for a user of the ops
// account, which the tenant exports to the ops account (and nothing else
// of its replies: an admin's 'device --site' replies carry secrets).
func TaskReplySubjectBy(site, by, id string) string {
	if u, ok := strings.CutPrefix(by, TaskRealmOps+":"); ok {
		return "ctl." + site + ".reply." + TaskRealmOps + "." + u + "." + id
	}
	return TaskReplySubject(site, id)
}

// TaskOpsPrefix is what the ops account puts before a tenant's task
// subjects (TaskOpsSubject, TaskReplySubjectBy) to reach that tenant:
// tenants.<tenant>. (the ops account's imports, package tenancy).
func TaskOpsPrefix(tenant string) string { return "tenants." + tenant + "." }

// TaskReplySubject returns the subject of the replies of task id at site:
// ctl.<site>.reply.<id>. Replies go there rather than to the requester's
// inbox so that a site's link and its pollers may publish its own site's
// replies and nothing else, with no reply permissions to track.
func TaskReplySubject(site, id string) string { return "ctl." + site + ".reply." + id }

// Discovery bounds.
const (
	// DiscoverMaxAddrs is the most addresses a discovery sweeps without
	// TaskRequest.AllowLarge: a /22.
	DiscoverMaxAddrs = 1024
	// DiscoverHardMaxAddrs is the most it sweeps at all: a /16.
	DiscoverHardMaxAddrs = 65536
	// DiscoverDefaultRate is the default of TaskRequest.Rate.
	DiscoverDefaultRate = 200
	// DiscoverMaxRate bounds TaskRequest.Rate.
	DiscoverMaxRate = 5000
)

// TaskRequest is one task, as the CLI sends it.
type TaskRequest struct {
	ID   string `json:"id"`   // unique per run; the key of a cancel
	Verb string `json:"verb"` // one of TaskVerbs, TaskWhois or TaskCancel
	Site string `json:"site"`
	// By is the requester's user. The site ignores what the request
	// says and takes it from the subject (TaskRequester).
	By string `json:"by,omitempty"`
	// For is, in a TaskWhois, the verb of the device task it precedes
	// (a refusal is recorded as that task's).
	For        string   `json:"for,omitempty"`
	Device     string   `json:"device,omitempty"`
	Address    string   `json:"address,omitempty"`
	OIDs       []string `json:"oids,omitempty"`
	CIDR       string   `json:"cidr,omitempty"`
	AllowLarge bool     `json:"allow_large,omitempty"`
	// Rate bounds a discovery's probes per second (0: the default).
	Rate int `json:"rate,omitempty"`
	// Port is the SNMP port a discovery or snmp-get tries (0: 161).
	Port int `json:"port,omitempty"`
	// SNMPWithoutPing makes a discovery try SNMP at every address of
	// its prefix, not only at those that answered the ICMP sweep: it
	// finds the agents behind a filter that drops echo requests, at the
	// cost of an SNMP try per credential at every address (the same
	// rate bound).
	SNMPWithoutPing bool `json:"snmp_without_ping,omitempty"`
	// Credentials are tried by a discovery before the site's own (the
	// SNMP settings of its inventory). Secrets: sent only to the site.
	Credentials []SNMP `json:"credentials,omitempty"`
	// Timeout is how long the requester waits; the site stops then too.
	Timeout Duration `json:"timeout,omitempty"`
}

// Validate checks the request's fields for its verb and names the first
// that breaks a rule.
func (r *TaskRequest) Validate() error {
	if err := ValidateTaskID(r.ID); err != nil {
		return err
	}
	if err := ValidateName("site", r.Site); err != nil {
		return err
	}
	switch r.Verb {
	case TaskPollNow, TaskWalk, TaskWhois:
		if err := ValidateName("device", r.Device); err != nil {
			return err
		}
		if r.Verb == TaskWalk {
			return validateOIDs(r.OIDs, 1)
		}
	case TaskPing:
		return validateAddress(r.Address)
	case TaskSNMPGet:
		if err := validateAddress(r.Address); err != nil {
			return err
		}
		return validateOIDs(r.OIDs, 0)
	case TaskDiscover:
		_, err := DiscoverPrefix(r.CIDR, r.AllowLarge)
		if err == nil && (r.Rate < 0 || r.Rate > DiscoverMaxRate) {
			err = fmt.Errorf("rate %d is out of range; use 1 to %d probes a second", r.Rate, DiscoverMaxRate)
		}
		return err
	case TaskCancel:
	default:
		return fmt.Errorf("task verb %q: use one of %s", r.Verb, strings.Join(TaskVerbs, ", "))
	}
	if r.Port < 0 || r.Port > 65535 {
		return fmt.Errorf("port %d is out of range; use 1 to 65535", r.Port)
	}
	return nil
}

// ValidateTaskID checks a task's id: one subject token of 1 to 64
// letters, digits, _ and - (its replies' subject ends with it).
func ValidateTaskID(id string) error {
	if id == "" || len(id) > 64 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
		return fmt.Errorf("task id %q: use 1 to 64 letters, digits, _ and -", id)
	}
	return nil
}

func validateAddress(a string) error {
	if a == "" {
		return errors.New("address is empty; give the IP address or host name to reach")
	}
	if strings.ContainsAny(a, " \t/") {
		return fmt.Errorf("address %q is not an IP address or host name", a)
	}
	return nil
}

// validateOIDs checks that oids are numeric OIDs, exactly n of them (0:
// at least one).
func validateOIDs(oids []string, n int) error {
	switch {
	case len(oids) == 0:
		return errors.New("no OID given; give a numeric OID such as 1.3.6.1.2.1.1")
	case n > 0 && len(oids) != n:
		return fmt.Errorf("%d OIDs given; give exactly %d", len(oids), n)
	}
	for _, o := range oids {
		s := strings.TrimPrefix(o, ".")
		ok := s != ""
		for _, part := range strings.Split(s, ".") {
			if part == "" || strings.Trim(part, "0123456789") != "" {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("OID %q is not numeric; use dotted numbers such as 1.3.6.1.2.1.1", o)
		}
	}
	return nil
}

// DiscoverPrefix parses a discovery's CIDR and checks its size: an IPv4
// prefix of at most DiscoverMaxAddrs addresses (a /22), or with
// allowLarge of at most DiscoverHardMaxAddrs (a /16).
func DiscoverPrefix(cidr string, allowLarge bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q: %w; use an IPv4 prefix such as 192.0.2.0/24", cidr, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("cidr %q: only IPv4 prefixes can be swept", cidr)
	}
	n := 1 << (32 - p.Bits())
	switch {
	case n > DiscoverHardMaxAddrs:
		return netip.Prefix{}, fmt.Errorf("cidr %q has %d addresses; the most a discovery sweeps is a /16", cidr, n)
	case n > DiscoverMaxAddrs && !allowLarge:
		return netip.Prefix{}, fmt.Errorf("cidr %q has %d addresses, more than a /22 (%d); pass --allow-large to sweep it", cidr, n, DiscoverMaxAddrs)
	}
	return p.Masked(), nil
}

// DiscoverAddrs lists the addresses of p a discovery sweeps: all of them
// but, in prefixes of 4 or more addresses, the network and broadcast
// addresses.
func DiscoverAddrs(p netip.Prefix) []netip.Addr {
	var out []netip.Addr
	n := 1 << (32 - p.Bits())
	a := p.Addr()
	for i := 0; i < n; i++ {
		if !(n >= 4 && (i == 0 || i == n-1)) {
			out = append(out, a)
		}
		a = a.Next()
	}
	return out
}

// TaskReply is one answer of a task. A task answers with any number of
// replies and ends with one whose Done is set (and Error if it failed).
type TaskReply struct {
	ID     string `json:"id"`
	Poller string `json:"poller"`
	Seq    int    `json:"seq"`
	Done   bool   `json:"done,omitempty"`
	Error  string `json:"error,omitempty"`
	// Code classifies Error: TaskCodeNoDevice, TaskCodeCancelled, ...
	Code string `json:"code,omitempty"`

	Progress   *TaskProgress `json:"progress,omitempty"`
	Varbinds   []Varbind     `json:"varbinds,omitempty"`
	Ping       *PingResult   `json:"ping,omitempty"`
	Samples    []Sample      `json:"samples,omitempty"`
	Candidates []Candidate   `json:"candidates,omitempty"`
	// Owner is, for TaskWhois, the poller that owns the device; Known
	// says whether the site has the device at all.
	Owner string `json:"owner,omitempty"`
	Known bool   `json:"known,omitempty"`
}

// Task reply codes.
const (
	TaskCodeNoDevice  = "no_device"
	TaskCodeNoOwner   = "no_owner"
	TaskCodeCancelled = "cancelled"
	TaskCodeTimeout   = "timeout"
	TaskCodeFailed    = "failed"
	// TaskCodeRefused: the site did not run the task (bad input, no such
	// device, no owner, too large, busy); the audit event says why.
	TaskCodeRefused = "refused"
)

// TaskStarted is the TaskProgress phase of the first reply of every task,
// which the site sends as it takes the task.
const TaskStarted = "started"

// TaskProgress is how far a long task is.
type TaskProgress struct {
	Phase string `json:"phase"` // "icmp", "snmp", "walk"
	Done  int    `json:"done"`
	Total int    `json:"total,omitempty"`
	Found int    `json:"found,omitempty"`
}

// PingResult is what one ICMP probe saw.
type PingResult struct {
	Address  string  `json:"address"`
	OK       bool    `json:"ok"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	RTTAvgMS float64 `json:"rtt_avg_ms,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// Candidate is a device a discovery found.
type Candidate struct {
	Address     string `json:"address"`
	ICMP        bool   `json:"icmp"`
	SNMP        bool   `json:"snmp"`
	SysName     string `json:"sys_name,omitempty"`
	SysObjectID string `json:"sys_object_id,omitempty"`
	SysDescr    string `json:"sys_descr,omitempty"`
	Interfaces  int    `json:"interfaces,omitempty"`
	// Version and Credential say which of the tried credentials answered,
	// by reference (no secret is sent back): "request:<i>", the i-th of
	// TaskRequest.Credentials (from 0), or "device:<name>", the SNMP
	// settings of that device of the site's inventory.
	Version    string `json:"version,omitempty"`
	Credential string `json:"credential,omitempty"`
	// Name is the device name it gets in the inventory.
	Name string `json:"name,omitempty"`
	// Neighbors are its LLDP and CDP neighbours, read with the credential
	// that answered: none when it serves neither LLDP-MIB nor
	// CISCO-CDP-MIB, or when reading them failed (the poller logs why).
	Neighbors []Neighbor `json:"neighbors,omitempty"`
}

// TaskAudit is the record of a task run in its audit event (kind task).
type TaskAudit struct {
	ID     string        `json:"id"`
	Verb   string        `json:"verb"`
	By     string        `json:"by,omitempty"`
	Target string        `json:"target,omitempty"` // device, address or CIDR
	Result string        `json:"result"`           // "ok", or the error code
	Error  string        `json:"error,omitempty"`
	Took   time.Duration `json:"took_ns"`
	Found  int           `json:"found,omitempty"` // discovery: candidates
	Added  int           `json:"added,omitempty"` // discovery: devices added
}

// Target is what the request acts on, for its audit record.
func (r *TaskRequest) Target() string {
	switch {
	case r.Device != "":
		return r.Device
	case r.CIDR != "":
		return r.CIDR
	}
	return r.Address
}

// CandidateName is the device name of a discovered device: its sysName
// when that is a valid name (lower-cased), else one made from its address.
func CandidateName(c Candidate) string {
	n := strings.ToLower(c.SysName)
	if i := strings.IndexByte(n, '.'); i > 0 {
		n = n[:i]
	}
	if ValidateName("device", n) == nil {
		return n
	}
	return "ip-" + strings.NewReplacer(".", "-", ":", "-").Replace(c.Address)
}

// SortCandidates orders candidates by address.
func SortCandidates(cs []Candidate) {
	slices.SortFunc(cs, func(a, b Candidate) int {
		x, _ := netip.ParseAddr(a.Address)
		y, _ := netip.ParseAddr(b.Address)
		return x.Compare(y)
	})
}
