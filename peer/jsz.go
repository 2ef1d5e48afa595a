package peer

import (
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// jszAccounts is srv.Jsz with the details of every account that uses
// JetStream. Jsz details 1,024 accounts unless told how many (sorted by
// name, the rest left out), so that on a central of more tenants than that
// the tenant workers, the source watch and the metrics would pass over
// every tenant named after the 1,024th.
func jszAccounts(srv *server.Server, opts server.JSzOptions) (*server.JSInfo, error) {
	opts.Accounts, opts.Offset, opts.Limit = true, 0, math.MaxInt
	return srv.Jsz(&opts)
}

// paceAfter is how long a look over every account (jszAccounts) that
// took took waits before the next: every, or twenty times as long as it
// took when that is longer (as the disk watch paces its looks at the
// server's health, healthEvery), so that with thousands of tenants the
// looks stay a small share of a core.
func paceAfter(every, took time.Duration) time.Duration {
	return max(every, healthzShare*took)
}

// streamsLook is the peer's last look at every account's streams
// (jszAccounts with Streams), shared by its periodic looks over them, the
// tenant workers' (tenantAccounts) and the source watch's
// (sourcingAccounts): each scan reads the state of every stream of every
// account, so that with thousands of tenants one look serves both.
type streamsLook struct {
	mu   sync.Mutex
	at   time.Time
	info *server.JSInfo
	took time.Duration
}

// get returns a look no older than maxAge, taking a new one when the last
// is older, and how long the look it returns took.
func (l *streamsLook) get(srv *server.Server, maxAge time.Duration) (*server.JSInfo, time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.info != nil && time.Since(l.at) < maxAge {
		return l.info, l.took, nil
	}
	start := time.Now()
	info, err := jszAccounts(srv, server.JSzOptions{Streams: true})
	if err != nil {
		return nil, 0, err
	}
	l.info, l.at, l.took = info, start, time.Since(start)
	return info, l.took, nil
}
