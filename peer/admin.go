package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
)

// systemConn returns an in-process connection in the system account,
// authenticated with the key the peer generated at start. The caller closes
// it. It returns ErrNotStarted before Start or after Close, ErrOperatorMode
// in operator mode (the system account's users come from the key store).
func (p *Peer) systemConn(opts ...nats.Option) (*nats.Conn, error) {
	return p.dialInProcess((*internalAuth).sysConnOption, "meshmon-peer-system", opts)
}

// servePeerAdmin answers, for a clustered central peer without --trust,
// requests to remove a member of its cluster (bus.RemovePeerSubject; one
// peer of the queue group answers each), until ctx is done: it removes the
// member from the cluster's JetStream through the peer's system user, and
// its entry from the join bucket.
func (p *Peer) servePeerAdmin(ctx context.Context) {
	nc, err := p.InProcessConn(nats.Name("meshmon-peer-admin"))
	if err != nil {
		p.log.Error("peer admin: in-process connection", "err", err)
		return
	}
	defer nc.Close()
	sys, err := p.systemConn()
	if err != nil {
		p.log.Error("peer admin", "err", err)
		return
	}
	defer sys.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		p.log.Error("peer admin", "err", err)
		return
	}
	sub, err := nc.QueueSubscribe(bus.RemovePeerSubject, "meshmon-central", func(m *nats.Msg) {
		var req bus.RemovePeerRequest
		var members []string
		err := json.Unmarshal(m.Data, &req)
		if err != nil {
			err = fmt.Errorf("remove peer: bad request: %v", err)
		} else {
			rctx, cancel := context.WithTimeout(ctx, 18*time.Second)
			members, err = bus.RemoveClusterPeer(rctx, sys, req.Name, req.Force)
			if err == nil {
				p.log.Warn("peer removed from the cluster", "removed", req.Name, "members", members, "forced", req.Force)
				if ferr := bus.ForgetJoin(rctx, js, req.Name); ferr != nil {
					p.log.Warn("peer removed; its join entry stays", "err", ferr)
				}
			}
			cancel()
		}
		b, _ := json.Marshal(bus.NewRemovePeerReply(members, err))
		_ = m.Respond(b)
	})
	if err != nil {
		p.log.Error("peer admin: subscribe", "err", err)
		return
	}
	defer sub.Unsubscribe()
	<-ctx.Done()
}
