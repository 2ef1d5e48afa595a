package notify

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefusedAddress is what a delivery to an address notifications may
// not reach returns.
var ErrRefusedAddress = errors.New("address refused")

// A channel's URL or SMTP server is a tenant admin's to set, and central
// makes the connection: without a bound a channel could reach what only
// central should (its own ports on loopback, the cloud's metadata service
// on a link-local address) and read an answer's status, or an SMTP
// error's first line, back from the delivery log. So a delivery connects
// to no link-local, unspecified or multicast address, to loopback only
// where the central peer allows it (--notify-allow-loopback: a mail relay
// on the central host, tests), and to no network the operator denies
// (--notify-deny-net: central's own, a management network). The
// address is checked as dialled, after the name is resolved, so a name
// that resolves to such an address is refused too. Redirects are not
// followed (Client).

// Reach is what a central peer lets deliveries connect to beyond the
// rules above. The zero value refuses loopback and denies no network.
type Reach struct {
	// AllowLoopback lets deliveries connect to loopback addresses (a
	// central peer's --notify-allow-loopback).
	AllowLoopback bool
	// Deny lists networks deliveries may not connect to (a central
	// peer's --notify-deny-net).
	Deny []netip.Prefix
}

// Dialer returns the dialer deliveries connect with: it refuses what
// the comment above says, as r allows.
func Dialer(r Reach, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		return r.check(address)
	}}
}

// check refuses address (ip:port, as dialled) by the rules above.
func (r Reach) check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ErrRefusedAddress, address)
	}
	ip := ap.Addr().Unmap()
	switch {
	case ip.IsLoopback() && !r.AllowLoopback:
		return fmt.Errorf("%w: %s is a loopback address (a central peer allows it with --notify-allow-loopback)", ErrRefusedAddress, ip)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address (a cloud's metadata service)", ErrRefusedAddress, ip)
	case ip.IsUnspecified(), ip.IsMulticast():
		return fmt.Errorf("%w: %s is not a host's address", ErrRefusedAddress, ip)
	}
	for _, n := range r.Deny {
		if n.Contains(ip) {
			return fmt.Errorf("%w: %s is in %s, which the central peers deny (--notify-deny-net)", ErrRefusedAddress, ip, n)
		}
	}
	return nil
}

// ParseDenyNets parses networks to deny (--notify-deny-net), each in CIDR
// form ("10.0.0.0/8", "fd00::/8"); the error names the one that is not. An
// IPv4 network written IPv4-mapped ("::ffff:10.0.0.0/104") is taken as the
// IPv4 network it maps (10.0.0.0/8): an address is checked unmapped.
func ParseDenyNets(nets []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(nets))
	for _, s := range nets {
		n, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("notify deny net %q is not a network in CIDR form (such as 10.0.0.0/8 or fd00::/8)", s)
		}
		if n.Addr().Is4In6() && n.Bits() >= 96 {
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		out = append(out, n.Masked())
	}
	return out, nil
}

// Client returns the HTTP client deliveries post with: its connections
// made by Dialer, no redirect followed (a redirect's answer is a failed
// delivery: following it would take a request where the channel's URL
// does not say, https to http included), each request bounded by timeout.
func Client(r Reach, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the address checked is the one dialled
	t.DialContext = Dialer(r, 30*time.Second).DialContext
	return &http.Client{Timeout: timeout, Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}
