package peer

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/notify"
	"github.com/meshmon/meshmon/tenancy"
)

// Roles a peer can have in the mesh.
const (
	// RoleSite is a peer at a site: its JetStream domain is the site name,
	// and with Central set it dials central over a leaf link.
	RoleSite = "site"
	// RoleCentral is a central peer: JetStream domain "hub", clustered
	// with the other central peers, sourcing every site.
	RoleCentral = "central"
)

// DefaultTenant is the tenant account every peer serves until tenancy lands.
const DefaultTenant = "default"

// Cluster joins peers of one site, or of central, into a NATS cluster.
type Cluster struct {
	// Name is the cluster's name, the same on every member.
	Name string `json:"name,omitempty"`
	// Listen is the route address, host:port; empty means no cluster.
	Listen string `json:"listen,omitempty"`
	// Routes are the other members' route URLs (nats-route://host:port);
	// listing the peer's own address too is harmless.
	Routes []string `json:"routes,omitempty"`
}

// Clustered reports whether c makes the peer a cluster member.
func (c Cluster) Clustered() bool { return c.Listen != "" }

// Config is the configuration of one peer.
type Config struct {
	// Name is the server name; it must be unique in the mesh. A site peer
	// given none makes one at its first start, its site's name and a
	// random suffix, and keeps it in DataDir (siteServerName).
	Name string `json:"name"`
	// Role is RoleSite (the default) or RoleCentral.
	Role string `json:"role"`
	// Site is the site name and the JetStream domain of a site peer; a
	// central peer ignores it.
	Site string `json:"site"`
	// Tenant is the account the peer's streams, users and leaf link belong
	// to.
	Tenant string `json:"tenant"`
	// Cluster makes the peer a member of a cluster.
	Cluster Cluster `json:"cluster,omitzero"`
	// LeafListen (central) is where sites dial in, host:port; empty means
	// no site can join. LeafAdvertise is the host:port sites are told to
	// dial, when it differs (NAT, a proxy, a container's name).
	LeafListen    string `json:"leaf_listen,omitempty"`
	LeafAdvertise string `json:"leaf_advertise,omitempty"`
	// LeafUser and LeafPassword are the tenant's leaf credential: central
	// accepts it, a site presents it. Every central peer has the same.
	LeafUser     string `json:"leaf_user,omitempty"`
	LeafPassword string `json:"leaf_password,omitempty"`
	// Tenants (site) puts the site peer in operator mode: it trusts
	// SiteTrust's operator, keeps each tenant's account with the tenant's
	// limits, links each to central with the tenant's leaf credential,
	// and takes clients with the tenants' credentials only (see
	// sitetenants.go). Each comes from a join token of 'meshmon site add
	// --tenant'.
	Tenants   []SiteTenant   `json:"tenants,omitempty"`
	SiteTrust *tenancy.Trust `json:"site_trust,omitempty"`
	// Central (site) are the leaf URLs of central, nats-leaf://host:port.
	// The site dials them; central never dials a site.
	Central []string `json:"central,omitempty"`
	// LeafDialTimeout (site) bounds one attempt to reach central; 0 means
	// DefaultLeafDialTimeout.
	LeafDialTimeout time.Duration `json:"leaf_dial_timeout,omitempty"`
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string `json:"listen"`
	// DataDir holds the JetStream store (in DataDir/jetstream).
	DataDir string `json:"data_dir"`
	// SyncAlways fsyncs every stored message before acking it. Without it
	// JetStream syncs every two minutes and a power loss can lose
	// acknowledged events.
	SyncAlways bool `json:"sync_always"`
	// Auth is how clients authenticate; the zero value is no auth.
	Auth Auth `json:"auth"`
	// Trust (central) is the trust file meshmon init wrote: the peer runs
	// in operator mode, every tenant is its own account and every client
	// authenticates with a tenant user's credentials (see trust.go). Auth,
	// Tenant and the leaf credential do not apply then.
	Trust string `json:"trust,omitempty"`
	// Limits sizes the streams.
	Limits bus.StreamLimits `json:"limits"`
	// FitLimits lets the peer lower Limits' EventsMaxBytes and
	// MetricsMaxBytes, for a stream it makes, to what the store has room
	// for when they do not fit (see limits.go); the CLI sets it when the
	// size flags are left at their defaults. Without it such a start fails
	// with ErrStoreTooSmall.
	FitLimits bool `json:"fit_limits,omitempty"`
	// MaxMemory and MaxStore bound JetStream's resources in bytes; 0 leaves
	// the server's defaults (a share of RAM and disk).
	MaxMemory int64 `json:"max_memory,omitempty"`
	MaxStore  int64 `json:"max_store,omitempty"`
	// HTTPListen is the monitoring address, host:port (a host left out
	// means 127.0.0.1); empty turns it off. The monitor is served over
	// HTTPS with the peer's certificate and asks for HTTP basic auth with
	// HTTPUser and HTTPPassword (see monitor.go).
	HTTPListen   string `json:"http_listen,omitempty"`
	HTTPUser     string `json:"http_user,omitempty"`
	HTTPPassword string `json:"http_password,omitempty"`
	// TLS is the peer's certificate and the mesh's CA. Every listener
	// serves it, and routes are mutual TLS against the CA. A peer without
	// it runs only with Insecure.
	TLS TLS `json:"tls,omitzero"`
	// CentralCA (site) is the PEM of the CA that central's certificate is
	// verified against on the leaf link: the one its join token pins.
	// Without it the site verifies central against TLS.CA; with neither,
	// the link is plaintext and needs Insecure.
	CentralCA string `json:"central_ca,omitempty"`
	// Insecure allows what is refused otherwise: listeners and links
	// without TLS, a client listener off loopback without client
	// authentication, monitoring without a password. The peer warns at
	// start.
	Insecure bool `json:"insecure,omitempty"`
	// NoTenantWorkers keeps a central peer from running the tenants'
	// workers (the alarm processor and the notification runner): for a
	// test or bench that runs its own, or a central whose alarms are
	// processed elsewhere.
	NoTenantWorkers bool `json:"no_tenant_workers,omitempty"`
	// AlarmLateAfter (central) is how long after its time an event may
	// reach the alarm processor before the changes it makes are late,
	// which notifications summarise instead of paging each; 0 is
	// alarm.DefaultLateAfter (a minute).
	AlarmLateAfter time.Duration `json:"alarm_late_after,omitempty"`
	// NotifyAllowLoopback (central) lets notifications connect to
	// loopback addresses: a channel's URL or SMTP server on the central
	// host (notify.Dialer refuses them otherwise, and link-local ones
	// always).
	NotifyAllowLoopback bool `json:"notify_allow_loopback,omitempty"`
	// NotifyDenyNets (central) are networks notifications may not
	// connect to, in CIDR form: the operator's own (central's management
	// network), which a tenant admin's channel could otherwise probe.
	NotifyDenyNets []string `json:"notify_deny_nets,omitempty"`
}

// MinPasswordLen is the shortest password a peer takes for its clients,
// its leaf credential and its monitor.
const MinPasswordLen = 12

// DefaultConfig returns a single site peer for site "local" on
// 127.0.0.1:4222 with its data in ./meshmon-data, SyncAlways and the default
// stream limits, without auth.
func DefaultConfig() Config {
	return Config{
		Name:       "meshmon",
		Role:       RoleSite,
		Tenant:     DefaultTenant,
		LeafUser:   "leaf-" + DefaultTenant,
		Site:       "local",
		Listen:     "127.0.0.1:4222",
		DataDir:    "meshmon-data",
		SyncAlways: true,
		Limits:     bus.DefaultStreamLimits(),
	}
}

// Validate returns the first problem, naming the field and the rule. The
// error wraps ErrInvalidConfig (and meshmon.ErrInvalidName for a bad site).
//
// The checks run in a fixed order: the name, the fields of the role (a
// site's or central's), the tenant account, the cluster, the listeners and
// the store, the monitor, and last what the peer exposes without TLS or
// authentication.
func (c Config) Validate() error {
	checks := []func() error{c.validateName, c.validateRole, c.validateAccount, c.Cluster.validate, c.validateStore, c.validateHTTP, c.validateExposure}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// invalid is an error of Validate: ErrInvalidConfig, with the problem.
func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

func (c Config) validateName() error {
	if c.Name == "" && c.Role != RoleSite {
		return invalid("name is empty; give the server a name unique in the mesh")
	}
	if strings.ContainsAny(c.Name, " \t\r\n") {
		return invalid("name %q must not contain white space", c.Name)
	}
	return nil
}

func (c Config) validateRole() error {
	switch c.Role {
	case RoleSite:
		return c.validateSite()
	case RoleCentral:
		return c.validateCentral()
	}
	return invalid("role %q must be %s or %s", c.Role, RoleSite, RoleCentral)
}

// validateSite checks the fields of a site peer: its name, its link to
// central, and its tenants in operator mode.
func (c Config) validateSite() error {
	if err := meshmon.ValidateName("site", c.Site); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.Site == bus.HubDomain {
		return invalid("site %q is reserved for central's JetStream domain; name the site otherwise", c.Site)
	}
	if c.LeafListen != "" {
		return invalid("leaf listen is for central peers: sites dial out and open no port (use --role central)")
	}
	for _, u := range c.Central {
		if err := checkURL(u, "nats-leaf", "tls", "ws", "wss", "nats"); err != nil {
			return invalid("central %q: %v", u, err)
		}
	}
	if c.LeafDialTimeout < 0 || c.LeafDialTimeout > time.Minute {
		return invalid("leaf dial timeout %s must be from 0 (the default, %s) to 1m", c.LeafDialTimeout, DefaultLeafDialTimeout)
	}
	if len(c.Central) > 0 && len(c.Tenants) == 0 && (c.LeafUser == "" || c.LeafPassword == "") {
		return invalid("central is set without a leaf credential; give the join token 'meshmon site add' printed")
	}
	if len(c.Tenants) > 0 {
		if err := c.validateTenants(); err != nil {
			return invalid("%v", err)
		}
	}
	if c.Trust != "" {
		return invalid("trust is for central peers for now: a site peer serves one tenant, with the leaf credential 'meshmon site add' printed")
	}
	return nil
}

// validateCentral checks the fields of a central peer: where sites dial
// in, and its trust file in operator mode.
func (c Config) validateCentral() error {
	if len(c.Central) > 0 {
		return invalid("central is for site peers; central peers cluster with --routes")
	}
	if c.LeafListen != "" {
		if err := checkHostPort(c.LeafListen); err != nil {
			return invalid("leaf listen %q: %v", c.LeafListen, err)
		}
		if len(c.LeafPassword) < MinPasswordLen && c.Trust == "" {
			return invalid("leaf password must be at least 12 characters (every central peer has the same; sites get it from 'meshmon site add')")
		}
	}
	if c.LeafAdvertise != "" {
		if err := checkHostPort(c.LeafAdvertise); err != nil {
			return invalid("leaf advertise %q: %v", c.LeafAdvertise, err)
		}
	}
	if len(c.Tenants) > 0 {
		return invalid("tenants are for site peers; central takes them through its resolver (--trust)")
	}
	if _, err := notify.ParseDenyNets(c.NotifyDenyNets); err != nil {
		return invalid("%v", err)
	}
	if c.AlarmLateAfter < 0 {
		return invalid("alarm late after %s must not be negative (0: the default, a minute)", c.AlarmLateAfter)
	}
	if c.Trust != "" {
		if !c.Auth.None() {
			return invalid("auth is set with trust: in operator mode users come from tenant credentials (meshmon tenant creds); drop --user, --password and --nkey")
		}
		if _, err := ReadTrust(c.Trust); err != nil {
			return invalid("%v", err)
		}
	}
	return nil
}

// validateAccount checks the tenant account the peer serves and its leaf
// user.
func (c Config) validateAccount() error {
	if err := meshmon.ValidateName("tenant", c.Tenant); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.LeafUser != "" {
		if err := meshmon.ValidateName("leaf user", c.LeafUser); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	return nil
}

// validate checks a cluster: none at all, or a listen address and routes.
func (cl Cluster) validate() error {
	if cl.Listen == "" && len(cl.Routes) == 0 {
		return nil
	}
	if err := checkHostPort(cl.Listen); err != nil {
		return invalid("cluster listen %q: %v (routes need a listen address)", cl.Listen, err)
	}
	if len(cl.Routes) == 0 {
		return invalid("cluster listen %q is set without routes: JetStream in a cluster needs them; give --routes (the other members' route URLs, nats-route://host:port), or drop --cluster-listen for a single peer", cl.Listen)
	}
	if strings.ContainsAny(cl.Name, " \t.*>") {
		return invalid("cluster name %q must have no white space, dots or wildcards", cl.Name)
	}
	for _, r := range cl.Routes {
		if err := checkURL(r, "nats-route", "nats", "tls"); err != nil {
			return invalid("route %q: %v", r, err)
		}
	}
	return nil
}

// validateStore checks the client listener, the clients' auth, and the
// store: its directory, the streams' limits and JetStream's bounds.
func (c Config) validateStore() error {
	if err := checkHostPort(c.Listen); err != nil {
		return invalid("listen %q: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		return invalid("data dir is empty; give a directory for the JetStream store")
	}
	if err := c.Auth.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: limits: %w", ErrInvalidConfig, err)
	}
	if c.MaxMemory < 0 {
		return invalid("max memory %d must not be negative (0 means the server default)", c.MaxMemory)
	}
	if c.MaxStore < 0 {
		return invalid("max store %d must not be negative (0 means the server default)", c.MaxStore)
	}
	return nil
}

// validateHTTP checks the monitor: an address, and a password unless
// Insecure.
func (c Config) validateHTTP() error {
	if c.HTTPListen == "" {
		return nil
	}
	if err := checkHostPort(c.HTTPListen); err != nil {
		return invalid("http listen %q: %v", c.HTTPListen, err)
	}
	if (c.HTTPUser == "") != (c.HTTPPassword == "") {
		return invalid("http user and http password go together; set both or neither")
	}
	if c.HTTPPassword == "" && !c.Insecure {
		return invalid("http monitoring without a password: give --auth-user and --auth-password (the monitor asks for them) or --http-user and --http-password-file, or --insecure")
	}
	if c.HTTPPassword != "" && len(c.HTTPPassword) < MinPasswordLen {
		return invalid("http password must be at least %d characters", MinPasswordLen)
	}
	return nil
}

// validateExposure checks what the peer would leave open: a short
// password, listeners and a link to central without TLS, a client
// listener off loopback without authentication. Insecure allows the last
// three.
func (c Config) validateExposure() error {
	if c.Auth.Password != "" && len(c.Auth.Password) < MinPasswordLen {
		return invalid("auth password must be at least %d characters", MinPasswordLen)
	}
	if c.TLS.On() {
		if err := c.TLS.validate(); err != nil {
			return invalid("%v", err)
		}
	} else if !c.Insecure {
		return invalid("no TLS certificate: give --tls-cert, --tls-key and --tls-ca ('meshmon tls issue' makes them), or --insecure for plaintext on every listener")
	}
	if c.CentralCA != "" {
		if _, err := leafRemote(c.CentralCA); err != nil {
			return invalid("%v", err)
		}
	}
	if c.Role == RoleSite && len(c.Central) > 0 && c.CentralCA == "" && !c.TLS.On() && !c.Insecure {
		return invalid("the join token pins no CA of central (central runs --insecure?): the link to central would be plaintext; give --insecure to allow it")
	}
	if !c.clientAuth() && !c.Insecure && !isLoopback(c.Listen) {
		return invalid("listen %q is not a loopback address and clients need no authentication: set --auth-user/--auth-password(-file) or --auth-nkey (or --trust), listen on 127.0.0.1, or give --insecure", c.Listen)
	}
	return nil
}

// clientAuth reports whether clients must authenticate.
func (c Config) clientAuth() bool {
	return !c.Auth.None() || c.Trust != "" || len(c.Tenants) > 0
}

// isLoopback reports whether the host of addr is a loopback address (or
// localhost); an empty host means every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpAddr is HTTPListen with 127.0.0.1 for a host left out: the monitor
// is on loopback unless the address says otherwise.
func (c Config) httpAddr() string {
	host, port, err := net.SplitHostPort(c.HTTPListen)
	if err != nil || host != "" {
		return c.HTTPListen
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// checkURL checks that u is scheme://host:port with one of schemes.
func checkURL(u string, schemes ...string) error {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" || pu.Port() == "" {
		return fmt.Errorf("want %s://host:port", schemes[0])
	}
	if !slices.Contains(schemes, pu.Scheme) {
		return fmt.Errorf("scheme %q is not one of %s", pu.Scheme, strings.Join(schemes, ", "))
	}
	_, err = splitPort(pu.Port())
	return err
}

// Replicas is how many copies the peer's streams keep: three in a cluster
// of three or more (routes to two others at least), else one.
func (c Config) Replicas() int {
	others := 0
	for _, r := range c.Cluster.Routes {
		if u, err := url.Parse(r); err == nil && u.Host != c.Cluster.Listen {
			others++
		}
	}
	if c.Cluster.Clustered() && others >= 2 {
		return 3
	}
	return 1
}

// Domain is the peer's JetStream domain: the site, or "hub" for central.
func (c Config) Domain() string {
	if c.Role == RoleCentral {
		return bus.HubDomain
	}
	return c.Site
}

// ClusterName is the cluster's name: Cluster.Name, or one derived from the
// domain.
func (c Config) ClusterName() string {
	if c.Cluster.Name != "" {
		return c.Cluster.Name
	}
	return "meshmon-" + c.Domain()
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, like 127.0.0.1:4222")
	}
	if _, err := splitPort(port); err != nil {
		return err
	}
	return nil
}

func splitPort(port string) (int, error) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	return n, nil
}

// hostPort splits a validated address; port 0 becomes -1, the server's
// "pick a free port".
func hostPort(addr string) (string, int) {
	host, p, _ := net.SplitHostPort(addr)
	port, _ := splitPort(p)
	if port == 0 {
		port = -1
	}
	return host, port
}
