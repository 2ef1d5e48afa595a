package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	probing "github.com/prometheus-community/pro-bing"
	"golang.org/x/net/icmp"
)

// ICMPResult is what one ping of a device saw. A device that does not answer
// is an observation, not an error: OK is false and Reason says why.
type ICMPResult struct {
	OK             bool // at least one echo reply arrived
	Sent, Received int
	Loss           float64 // 0..1
	RTTMin         time.Duration
	RTTAvg         time.Duration
	RTTMax         time.Duration
	// Reason is, when !OK, one short phrase: "timeout", "cancelled",
	// "no such host", "icmp not permitted: ...".
	Reason string
	// Err is, when !OK, the underlying error, wrapping one of the ErrICMP*
	// sentinels.
	Err  error
	Took time.Duration
}

// ICMPMode chooses the kind of ICMP socket.
type ICMPMode int

const (
	// ICMPAuto uses unprivileged ICMP datagram sockets where the kernel
	// allows them (net.ipv4.ping_group_range) and raw sockets otherwise.
	ICMPAuto ICMPMode = iota
	// ICMPUnprivileged uses ICMP datagram sockets only.
	ICMPUnprivileged
	// ICMPPrivileged uses raw sockets only (root or CAP_NET_RAW).
	ICMPPrivileged
)

func (m ICMPMode) String() string {
	switch m {
	case ICMPAuto:
		return "auto"
	case ICMPUnprivileged:
		return "unprivileged"
	case ICMPPrivileged:
		return "privileged"
	}
	return fmt.Sprintf("ICMPMode(%d)", int(m))
}

// ReasonICMPNotPermitted is the Reason of a ping that could open no ICMP
// socket at all.
const ReasonICMPNotPermitted = "icmp not permitted: set net.ipv4.ping_group_range or run as root"

// ICMPProber pings devices with pro-bing. It is safe for concurrent use by
// many goroutines; each Ping opens its own socket. The first Ping finds out,
// once for the prober, which kind of socket this process may open.
type ICMPProber struct {
	mode     ICMPMode
	count    int
	interval time.Duration

	once       sync.Once
	privileged bool  // use raw sockets; set by once
	socketErr  error // no socket kind works; set by once
}

// NewICMPProber returns a prober that sends count echo requests (at least
// 1) interval apart (at least 1ms) per Ping.
func NewICMPProber(mode ICMPMode, count int, interval time.Duration) *ICMPProber {
	return &ICMPProber{mode: mode, count: max(count, 1), interval: max(interval, time.Millisecond)}
}

// Check reports whether this process may send ICMP echo requests in the
// prober's mode: nil, or an error wrapping ErrICMPNotPermitted that says
// what was tried. The answer is found once and kept.
func (p *ICMPProber) Check() error {
	_, err := p.socketKind()
	return err
}

// socketKind reports whether pings use raw sockets, or an error wrapping
// ErrICMPNotPermitted when the mode's sockets cannot be opened.
func (p *ICMPProber) socketKind() (privileged bool, err error) {
	p.once.Do(func() {
		var unprivErr error
		if p.mode != ICMPPrivileged {
			c, err := icmp.ListenPacket("udp4", "0.0.0.0")
			if err == nil {
				c.Close()
				p.privileged = false
				return
			}
			unprivErr = fmt.Errorf("open icmp datagram socket: %w", err)
			if p.mode == ICMPUnprivileged {
				p.socketErr = fmt.Errorf("%w: %w", ErrICMPNotPermitted, unprivErr)
				return
			}
		}
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err == nil {
			c.Close()
			p.privileged = true
			return
		}
		rawErr := fmt.Errorf("open raw icmp socket: %w", err)
		p.socketErr = fmt.Errorf("%w: %w", ErrICMPNotPermitted, errors.Join(unprivErr, rawErr))
	})
	return p.privileged, p.socketErr
}

// Ping sends the prober's echo requests to addr (an IP address or host name)
// and waits up to timeout after the last one for replies; so a Ping takes at
// most (count-1)*interval + timeout, or until ctx is done. It never fails: a
// failure is a result with OK false, a Reason and an Err.
func (p *ICMPProber) Ping(ctx context.Context, addr string, timeout time.Duration) ICMPResult {
	start := time.Now()
	res := p.ping(ctx, addr, max(timeout, time.Millisecond))
	res.Took = time.Since(start)
	return res
}

func (p *ICMPProber) ping(ctx context.Context, addr string, timeout time.Duration) ICMPResult {
	fail := func(reason string, err error) ICMPResult { return ICMPResult{Reason: reason, Err: err} }
	if err := ctx.Err(); err != nil {
		return fail("cancelled", fmt.Errorf("%w: %w", ErrICMPCancelled, err))
	}
	privileged, err := p.socketKind()
	if err != nil {
		return fail(ReasonICMPNotPermitted, err)
	}
	pinger := probing.New(addr)
	pinger.SetLogger(probing.NoopLogger{})
	pinger.SetPrivileged(privileged)
	pinger.Count = p.count
	pinger.Interval = p.interval
	pinger.Timeout = time.Duration(p.count-1)*p.interval + timeout
	pinger.ResolveTimeout = timeout
	pinger.RecordRtts, pinger.RecordTTLs = false, false
	if err := pinger.Resolve(); err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && !dnsErr.IsNotFound {
			return fail("name resolution failed", fmt.Errorf("%w: resolve %s: %w", ErrICMPNoSuchHost, addr, err))
		}
		return fail("no such host", fmt.Errorf("%w: resolve %s: %w", ErrICMPNoSuchHost, addr, err))
	}
	runErr := pinger.RunWithContext(ctx)
	st := pinger.Statistics()
	res := ICMPResult{
		Sent:     st.PacketsSent,
		Received: st.PacketsRecv,
		RTTMin:   st.MinRtt,
		RTTAvg:   st.AvgRtt,
		RTTMax:   st.MaxRtt,
	}
	if res.Sent > 0 {
		res.Loss = float64(res.Sent-res.Received) / float64(res.Sent)
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		res.Reason, res.Err = "cancelled", fmt.Errorf("%w: %w", ErrICMPCancelled, ctx.Err())
	case runErr != nil && errors.Is(runErr, os.ErrPermission):
		// The socket opened, so this is the send: a local firewall
		// (netfilter OUTPUT) rejects it with EPERM.
		res.Reason, res.Err = "icmp send not permitted (local firewall?)", fmt.Errorf("%w: ping %s: %w", ErrICMPNotPermitted, addr, runErr)
	case runErr != nil && !errors.Is(runErr, context.DeadlineExceeded):
		res.Reason, res.Err = "ping failed", fmt.Errorf("%w: ping %s: %w", ErrICMP, addr, runErr)
	case res.Received == 0:
		res.Reason, res.Err = "timeout", fmt.Errorf("%w: %s: %d sent, none answered", ErrICMPTimeout, addr, res.Sent)
	default:
		res.OK = true
	}
	if !res.OK && res.Sent == 0 {
		res.Loss = 1
	}
	return res
}
