package console

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Defaults of Config's login limits: five logins that central refused
// (a wrong password, a credential it does not take) within ten minutes
// from one address, or for one user, refuse that address or user for
// five minutes.
const (
	DefaultLoginFailures = 5
	DefaultLoginWindow   = 10 * time.Minute
	DefaultLoginLockout  = 5 * time.Minute
)

// maxLimiterKeys bounds the addresses and users the limiter remembers;
// past it, the entries with no lockout running are forgotten first.
const maxLimiterKeys = 10000

// loginLimiter counts logins central refused by key (an address, a user) and
// locks a key out for a while once it has too many. Its methods are safe
// for concurrent use.
type loginLimiter struct {
	max             int
	window, lockout time.Duration
	now             func() time.Time

	mu sync.Mutex
	m  map[string]*attempts
}

// attempts are a key's recent refused logins and its lockout.
type attempts struct {
	fails []time.Time // within the window, oldest first
	until time.Time   // refused until then
}

func newLoginLimiter(cfg Config) *loginLimiter {
	return &loginLimiter{max: cfg.LoginFailures, window: cfg.LoginWindow, lockout: cfg.LoginLockout, now: cfg.Now, m: map[string]*attempts{}}
}

// locked returns how much longer the first of keys that is locked out
// stays so, and which; zero when none is.
func (l *loginLimiter) locked(keys ...string) (time.Duration, string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if a := l.m[k]; k != "" && a != nil && now.Before(a.until) {
			return a.until.Sub(now), k
		}
	}
	return 0, ""
}

// failed counts a refused login against each of keys (empty ones left
// out); a key that reaches max within the window is locked out.
func (l *loginLimiter) failed(keys ...string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxLimiterKeys {
		l.prune(now)
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		a := l.m[k]
		if a == nil {
			a = &attempts{}
			l.m[k] = a
		}
		a.fails = append(recent(a.fails, now.Add(-l.window)), now)
		if len(a.fails) >= l.max {
			a.until, a.fails = now.Add(l.lockout), nil
		}
	}
}

// succeeded forgets the refused logins of keys.
func (l *loginLimiter) succeeded(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.m, k)
	}
}

// prune forgets the keys with no lockout running and no refusal within
// the window; if that is not enough, every key without a lockout.
func (l *loginLimiter) prune(now time.Time) {
	for k, a := range l.m {
		if !now.Before(a.until) && len(recent(a.fails, now.Add(-l.window))) == 0 {
			delete(l.m, k)
		}
	}
	for k, a := range l.m {
		if len(l.m) < maxLimiterKeys {
			return
		}
		if !now.Before(a.until) {
			delete(l.m, k)
		}
	}
}

// recent is the times after since (ts is oldest first).
func recent(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(since) {
		i++
	}
	return ts[i:]
}

// clientKey is the limiter's key of the request's client: its address
// without the port, an IPv6 address's /64 (a host is given a /64, and
// would otherwise have as many keys as it likes). Behind a proxy that is
// the proxy's.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return "address " + p.String()
	}
	return "address " + host
}

// tooMany is the refusal of a locked-out login: 429, with Retry-After.
func tooMany(w http.ResponseWriter, left time.Duration, key string, cfg Config) error {
	secs := int((left + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return &loginError{status: http.StatusTooManyRequests,
		msg: "too many refused logins for " + key + " (" + strconv.Itoa(cfg.LoginFailures) + " within " + cfg.LoginWindow.String() +
			"): logins refused for " + (time.Duration(secs) * time.Second).String() + " more; wait, then try again"}
}
