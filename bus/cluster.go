package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Removing a member from a JetStream cluster (a central machine lost for
// good, replaced by one of another name) is a system-account request. A
// central peer without --trust takes it from the tenant account on
// RemovePeerSubject and acts through its own system user; in operator mode
// the CLI signs a system user from the key store and calls RemoveClusterPeer
// itself.

// RemovePeerSubject is where central peers (one of their queue group)
// take a RemovePeerRequest and answer a RemovePeerReply.
const RemovePeerSubject = "meshmon.central.peer.remove"

// RemovePeerRequest asks for a cluster member's removal.
type RemovePeerRequest struct {
	Name string `json:"name"`
	// Force removes a member that is up (it leaves the cluster's
	// JetStream; stop it first, or it keeps trying to rejoin).
	Force bool `json:"force,omitempty"`
}

// RemovePeerReply answers a RemovePeerRequest: Error, or the members left.
// Make it with NewRemovePeerReply and read it with Err, so that the
// sentinel the error wraps crosses the wire (as Code).
type RemovePeerReply struct {
	Error string `json:"error,omitempty"`
	// Code names the sentinel Error wraps (removeCodes); empty for none.
	Code    string   `json:"code,omitempty"`
	Members []string `json:"members,omitempty"`
}

// removeCodes are the sentinels a RemovePeerReply carries, each with its
// code.
var removeCodes = []struct {
	code     string
	sentinel error
}{
	{"peer_up", ErrPeerUp},
	{"no_such_peer", ErrNoSuchPeer},
}

// NewRemovePeerReply is the answer to a removal: the members left, or err
// with the code of the sentinel it wraps.
func NewRemovePeerReply(members []string, err error) RemovePeerReply {
	if err == nil {
		return RemovePeerReply{Members: members}
	}
	r := RemovePeerReply{Error: err.Error()}
	for _, c := range removeCodes {
		if errors.Is(err, c.sentinel) {
			r.Code = c.code
			break
		}
	}
	return r
}

// Err is the error of the reply, nil for a removal made: Error's text,
// wrapping the sentinel Code names.
func (r RemovePeerReply) Err() error {
	if r.Error == "" {
		return nil
	}
	e := &remoteError{msg: r.Error}
	for _, c := range removeCodes {
		if c.code == r.Code {
			e.sentinel = c.sentinel
		}
	}
	return e
}

// remoteError is an error that crossed the wire: its text, and the
// sentinel its code named (nil for none, or a code this side does not
// know).
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// peerGone is how long the meta leader must not have heard from a member
// for it to count as down. A member that stops cleanly says so at once; one
// that is killed, or whose machine is lost, the server itself marks offline
// only after minutes, while a live member answers the leader every second.
const peerGone = 10 * time.Second

// unheardWait is how long a member the meta leader has not heard from since
// it took the lead is given to answer before it counts as down.
const unheardWait = 3 * time.Second

// The parts of the server's JSZ answer that RemoveClusterPeer reads.
type jszReply struct {
	Data *struct {
		Meta *struct {
			Name     string `json:"name"`
			Leader   string `json:"leader"`
			Replicas []struct {
				Name    string        `json:"name"`
				Current bool          `json:"current"`
				Offline bool          `json:"offline"`
				Active  time.Duration `json:"active"` // since the meta leader last heard from it
			} `json:"replicas"`
		} `json:"meta_cluster"`
	} `json:"data"`
	Error *apiError `json:"error"`
}

// apiError is the error of a server API answer.
type apiError struct {
	Description string `json:"description"`
}

// ClusterMembers asks the meta leader, over sys (a system-account
// connection), for the members of its JetStream cluster: each name, and
// whether it is down. The meta leader alone answers, so while the cluster
// has none the request waits until ctx is done: bound it.
func ClusterMembers(ctx context.Context, sys *nats.Conn) (cluster string, down map[string]bool, err error) {
	cluster, members, err := clusterMembers(ctx, sys)
	if err != nil {
		return "", nil, err
	}
	down = make(map[string]bool, len(members))
	for name, st := range members {
		down[name] = st != peerUp
	}
	return cluster, down, nil
}

// How the meta leader sees a member.
type peerState int

const (
	peerUp      peerState = iota
	peerDown              // offline, or not heard from for peerGone
	peerUnheard           // not heard from since the leader took the lead
)

func clusterMembers(ctx context.Context, sys *nats.Conn) (string, map[string]peerState, error) {
	msg, err := sys.RequestWithContext(ctx, "$SYS.REQ.SERVER.PING.JSZ", []byte(`{"leader_only":true}`))
	if err != nil {
		return "", nil, fmt.Errorf("ask the cluster's meta leader: %w (does the cluster have a JetStream quorum?)", err)
	}
	var r jszReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return "", nil, fmt.Errorf("ask the cluster's meta leader: %w", err)
	}
	if r.Error != nil {
		return "", nil, fmt.Errorf("ask the cluster's meta leader: %s", r.Error.Description)
	}
	if r.Data == nil || r.Data.Meta == nil || r.Data.Meta.Leader == "" {
		return "", nil, errors.New("ask the cluster's meta leader: the peer is not clustered, or has no meta leader")
	}
	meta := r.Data.Meta
	members := map[string]peerState{meta.Leader: peerUp}
	for _, p := range meta.Replicas {
		switch {
		case p.Offline || p.Active > peerGone:
			members[p.Name] = peerDown
		case p.Active == 0 && !p.Current:
			// A leader elected after the member stopped has never heard
			// from it, and says so only this way.
			members[p.Name] = peerUnheard
		default:
			members[p.Name] = peerUp
		}
	}
	return meta.Name, members, nil
}

// PeerRemoved is what 'peer rm' prints: the member removed and those left.
type PeerRemoved struct {
	Members []string `json:"members"`
	Removed string   `json:"removed"`
}

// WriteText writes the removal for people, and says so when fewer than
// three members are left to hold three replicas.
func (r PeerRemoved) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "peer %s removed from the cluster; members left: %s\n", r.Removed, strings.Join(r.Members, ", "))
	if err == nil && len(r.Members) < 3 {
		_, err = fmt.Fprintf(w, "fewer than three members are left: start another central peer (--routes to these) so the streams have three replicas again\n")
	}
	return err
}

// RemoveClusterPeer removes the member name from the JetStream cluster, over
// sys: the meta leader drops it, and moves the replicas it held to the other
// members. A member that is up is refused (ErrPeerUp) unless force; a name
// that is no member, with ErrNoSuchPeer. It returns the members left.
func RemoveClusterPeer(ctx context.Context, sys *nats.Conn, name string, force bool) ([]string, error) {
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return nil, fmt.Errorf("peer name %q: must be non-empty, with no white space", name)
	}
	cluster, members, err := clusterMembers(ctx, sys)
	if err != nil {
		return nil, err
	}
	if members[name] == peerUnheard && !force {
		// A live member answers a new leader within a second or two; one
		// still unheard of after unheardWait is gone.
		select {
		case <-time.After(unheardWait):
		case <-ctx.Done():
			return nil, fmt.Errorf("remove peer %q: %w", name, ctx.Err())
		}
		if cluster, members, err = clusterMembers(ctx, sys); err != nil {
			return nil, err
		}
		if members[name] == peerUnheard {
			members[name] = peerDown
		}
	}
	var left []string
	for m := range members {
		if m != name {
			left = append(left, m)
		}
	}
	slices.Sort(left)
	st, ok := members[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q is no member of cluster %s (members: %s)", ErrNoSuchPeer, name, cluster, strings.Join(left, ", "))
	case st != peerDown && !force:
		return nil, fmt.Errorf("%w: %q is a running member of cluster %s (heard from within %s); stop it first (or force the removal)", ErrPeerUp, name, cluster, peerGone)
	}
	req, _ := json.Marshal(map[string]string{"peer": name})
	msg, err := sys.RequestWithContext(ctx, "$JS.API.SERVER.REMOVE", req)
	if err != nil {
		return nil, fmt.Errorf("remove peer %q: %w", name, err)
	}
	var r struct {
		Success bool      `json:"success"`
		Error   *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return nil, fmt.Errorf("remove peer %q: %w", name, err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("remove peer %q: %s", name, r.Error.Description)
	}
	if !r.Success {
		return nil, fmt.Errorf("remove peer %q: the meta leader did not confirm", name)
	}
	return left, nil
}

// ForgetJoin deletes a central peer's entry in the join bucket, so that
// sites added later are not told to dial it.
func ForgetJoin(ctx context.Context, js jetstream.JetStream, server string) error {
	kv, err := js.KeyValue(ctx, CentralBucket)
	if err != nil {
		return fmt.Errorf("forget join info of %s: %w", server, err)
	}
	if err := kv.Delete(ctx, joinKey(server)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("forget join info of %s: %w", server, err)
	}
	return nil
}

// ForgetJoinExcept deletes the join bucket's entries of the central peers
// not in members (the cluster's members as its meta leader knows them), and
// returns the names it deleted. It is how an entry left behind by a removal
// whose ForgetJoin failed (the bucket moving its replica off the removed
// peer) still goes.
func ForgetJoinExcept(ctx context.Context, js jetstream.JetStream, members []string) ([]string, error) {
	kv, err := js.KeyValue(ctx, CentralBucket)
	if err != nil {
		return nil, fmt.Errorf("forget join info: %w", err)
	}
	keys, err := kv.ListKeysFiltered(ctx, joinKey("*"))
	if err != nil {
		return nil, fmt.Errorf("forget join info: %w", err)
	}
	var forgot []string
	for k := range keys.Keys() {
		server := strings.TrimPrefix(k, joinKey(""))
		if slices.Contains(members, server) {
			continue
		}
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return forgot, fmt.Errorf("forget join info of %s: %w", server, err)
		}
		forgot = append(forgot, server)
	}
	return forgot, nil
}

// RemovePeer asks the central peers, over nc (the tenant account of a
// central without --trust), to remove the cluster member name. It returns
// the members left, or the errors of RemoveClusterPeer as the answering
// peer had them (ErrPeerUp and ErrNoSuchPeer among them).
// ctx should allow some 20 s: the peer answering takes up to 18 s.
func RemovePeer(ctx context.Context, nc *nats.Conn, name string, force bool) ([]string, error) {
	req, _ := json.Marshal(RemovePeerRequest{Name: name, Force: force})
	msg, err := nc.RequestWithContext(ctx, RemovePeerSubject, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, errors.New("remove peer: no central peer answers; a clustered central peer takes it (in operator mode, central with --trust, give --keys)")
	}
	if err != nil {
		return nil, fmt.Errorf("remove peer: %w", err)
	}
	var r RemovePeerReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return nil, fmt.Errorf("remove peer: %w", err)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return r.Members, nil
}

// StepDownConsumer asks JetStream, over nc, to elect another leader for a
// consumer of the account nc is in.
func StepDownConsumer(nc *nats.Conn, stream, consumer string) error {
	m, err := nc.Request(fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", stream, consumer), nil, 2*time.Second)
	if err != nil {
		return err
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return errors.New(resp.Error.Description)
	}
	return nil
}
