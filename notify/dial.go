package notify

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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
// to no link-local, unspecified or multicast address, and to loopback only
// where the central peer allows it (--notify-allow-loopback: a mail relay
// on the central host, tests). The address is checked as dialled, after
// the name is resolved, so a name that resolves to such an address is
// refused too. Redirects are not followed (Client).

// Dialer returns the dialer deliveries connect with: it refuses what
// the comment above says, loopback unless allowLoopback.
func Dialer(allowLoopback bool, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		return checkAddress(address, allowLoopback)
	}}
}

// checkAddress refuses address (ip:port, as dialled) by the rules above.
func checkAddress(address string, allowLoopback bool) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ErrRefusedAddress, address)
	}
	ip := ap.Addr().Unmap()
	switch {
	case ip.IsLoopback() && !allowLoopback:
		return fmt.Errorf("%w: %s is a loopback address (a central peer allows it with --notify-allow-loopback)", ErrRefusedAddress, ip)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address (a cloud's metadata service)", ErrRefusedAddress, ip)
	case ip.IsUnspecified(), ip.IsMulticast():
		return fmt.Errorf("%w: %s is not a host's address", ErrRefusedAddress, ip)
	}
	return nil
}

// Client returns the HTTP client deliveries post with: its connections
// made by Dialer, no redirect followed (a redirect's answer is a failed
// delivery: following it would take a request where the channel's URL
// does not say, https to http included), each request bounded by timeout.
func Client(allowLoopback bool, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the address checked is the one dialled
	t.DialContext = Dialer(allowLoopback, 30*time.Second).DialContext
	return &http.Client{Timeout: timeout, Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}
