package peer

import (
	"math"

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
