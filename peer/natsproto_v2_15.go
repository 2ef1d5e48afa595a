package peer

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
)

// What the sourcing supervisors (the site's keeper, keeper.go, and
// central's source watch, sources.go) know of how nats-server's JetStream
// sources a stream across domains, none of it a documented API. Read off
// nats-server v2.15.2 and v2.15.3 (server/stream.go: setupSourceConsumer,
// processInboundSourceMsg, retrySourceConsumerAtSeq; server/consumer.go:
// sendFlowControl, sendIdleHeartbeat) and checked by TestSourceResumesAfterCut
// and TestMeshFaults. A newer nats-server is checked against this file first.
//
//   - A central peer reaches a site's JetStream on "$JS.<site>.API.>",
//     subjects the site's leaf link brings into the account: the account
//     has interest in them exactly while the link is up.
//   - A site reaches central's on "$JS.hub.API.>" in the same way.
//   - A source's consumer at the site delivers on its deliver subject
//     (bus.SourceDeliverSubject): messages with a reply "$JS.ACK.<...>",
//     flow-control requests with a reply "$JS.FC.<...>" and no payload,
//     and an idle heartbeat every second (status 100, no reply), whose
//     "Nats-Consumer-Stalled" header names the flow-control reply it is
//     stalled on, if any. An empty message to that reply unstalls it: it is
//     what JetStream's own source sends.
//   - Central's source holds a subscription on the deliver subject while
//     it waits on the site (between its requests for the consumer), and
//     asks the site for the consumer on any message there, not only on a
//     heartbeat: an empty message wakes it (the nudge). While its request
//     for the consumer is out it has no such subscription. The site's
//     own subscriptions to the subject (the keeper's, keepAccount) do not
//     cross the link (leafDenyImports), so at central the interest is the
//     source's.
//   - A push consumer without a deliver group takes only plain
//     subscriptions to its deliver subject as interest (the server's
//     interest notices, registerNotification); a queue subscription there
//     gets every delivery and never makes the consumer deliver (the
//     keeper's tap).
//   - A source with a consumer takes an idle heartbeat (status 100, no
//     reply) whose "Nats-Last-Consumer" is not the last delivery it got as
//     a gap, and asks the site for the consumer again from after the last
//     message it stored, whoever published the heartbeat (the forged
//     heartbeat, forgedHeartbeat).
//   - A source asks the site for its consumer with a reset request,
//     "$JS.<site>.API.CONSUMER.RESET.<stream>.<consumer>", no payload (back
//     to the consumer's acknowledgement floor), and waits 5 s for the
//     answer on a reply subscription of its own. With js_api_reply_v2
//     (peer.baseOptions) that reply is
//     "$JSC.R.<site>.<account hash>.<stream>.<consumer>.<id>", so the
//     request a source has out shows in the account's subscriptions
//     (pendingSourceRequests). The same request sent again with that reply
//     is answered to the waiting source as its own (resendSourceRequest).
//     The site hears its answer too: one of type
//     "io.nats.jetstream.api.v1.consumer_reset_response" without an error
//     is a reset done (resetAnswer).
//   - A reset (resetLocalStartingSeq) clears the deliveries awaiting
//     acknowledgement, not the flow-control request out nor the bytes
//     counted against the consumer's window: a reset consumer whose
//     request was lost in a cut delivers nothing, or up to its
//     MaxAckPending, until that request is answered (keepAccount's tap).
//   - A consumer's flow-control replies come to "$JS.FC.<stream>.<consumer>.<id>"
//     (without js_ack_format_v2), the same subjects at every site, so each
//     site hears every site's. Central's answer to a flow-control request
//     carries "Nats-Last-Stream" (it acknowledges up to there); its answer
//     to a stall a heartbeat names is empty. A stall answered leaves the
//     consumer at its MaxAckPending with no request out, and it asks again
//     only on a delivery or at its next heartbeat; raising MaxAckPending by
//     one makes it deliver, and ask, at once (keepAccount's prompt).
//   - A source's Active in the stream's details (JSZ) is how long ago it
//     last heard from the site; -1 when it has not heard from it since it
//     was set.
//   - A source is reset, so that it asks the site again from the last
//     message the stream holds of it, by removing it from the stream's
//     config and adding it again (bus.KickSources): two stream updates.

// natsServerProto is the nats-server release line this file matches.
const natsServerProto = "v2.15"

// Subjects of the protocol above.
const (
	// centralAPIInfo is central's JetStream account info request, which
	// the site's account has interest in while its link to central is up.
	centralAPIInfo = "$JS." + bus.HubDomain + ".API.INFO"
	// flowControlPrefix begins the reply of a consumer's flow-control request.
	flowControlPrefix = "$JS.FC."
	// ackPrefix begins the reply of a consumer's delivery.
	ackPrefix = "$JS.ACK."
	// stalledHeader is the header of a consumer's heartbeat that names the
	// flow-control request it is stalled on.
	stalledHeader = "Nats-Consumer-Stalled"
	// lastStreamHeader is the header of central's answer to a flow-control
	// request: the last stream sequence it acknowledges.
	lastStreamHeader = "Nats-Last-Stream"
)

// flowControlReplies is the subject of every flow-control reply to a
// site's source consumer of stream (see above).
func flowControlReplies(stream string) string {
	return flowControlPrefix + stream + "." + bus.SourceConsumer(stream) + ".*"
}

// stallAnswer reports whether m, a flow-control reply, answers a stall: it
// acknowledges nothing.
func stallAnswer(m *nats.Msg) bool { return m.Header.Get(lastStreamHeader) == "" }

// resetAnswers is the subject of the site's answers to central's sources'
// requests for its consumer of stream (see above): the reset's, and any
// other request a source makes for it.
func resetAnswers(site, stream string) string {
	return "$JSC.R." + site + ".*." + stream + "." + bus.SourceConsumer(stream) + ".*"
}

// resetAnswer reports whether m, an answer to a source's request for its
// consumer, is a reset done: the consumer delivers again from its
// acknowledgement floor.
func resetAnswer(m *nats.Msg) bool {
	var r struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal(m.Data, &r) == nil && r.Type == resetAnswerType && r.Error == nil
}

// resetAnswerType is the type of the answer to a consumer reset request.
const resetAnswerType = "io.nats.jetstream.api.v1.consumer_reset_response"

// centralLinked reports whether the site's account acc reaches central's
// JetStream: its link to central is up.
func centralLinked(acc *server.Account) bool { return acc.SubscriptionInterest(centralAPIInfo) }

// siteInfoSubject is where the site answers for one of its streams.
func siteInfoSubject(site, stream string) string {
	return "$JS." + site + ".API.STREAM.INFO." + stream
}

// siteReachable reports whether central's account acc reaches the site's
// JetStream: the site's link is up (or looks up: a link cut silently does
// until its pings fail).
func siteReachable(acc *server.Account, site, stream string) bool {
	return acc.SubscriptionInterest(siteInfoSubject(site, stream))
}

// sourceWaiting reports whether central's source of the site's stream
// waits on the site (it holds its subscription on the deliver subject, and
// has no request out for the consumer).
func sourceWaiting(acc *server.Account, site, stream string) bool {
	return acc.SubscriptionInterest(bus.SourceDeliverSubject(site, stream))
}

// observedSource is one source of central's streams as JSZ reports it.
type observedSource struct {
	key sourceKey
	// active is how long ago the source last heard from its site; negative
	// when it has not since it was set.
	active time.Duration
}

// observeSources reads the external sources of central's EVENTS and
// METRICS that this server leads in the account.
func observeSources(srv *server.Server, account string) ([]observedSource, error) {
	detail, err := srv.JszAccount(&server.JSzOptions{Account: account, Streams: true, StreamLeaderOnly: true})
	if err != nil {
		return nil, err
	}
	var out []observedSource
	for _, sd := range detail.Streams {
		if sd.Name != bus.EventsStream && sd.Name != bus.MetricsStream {
			continue
		}
		for _, src := range sd.Sources {
			if src.External == nil {
				continue
			}
			out = append(out, observedSource{
				key:    sourceKey{stream: sd.Name, site: bus.SourceSite(src.External.ApiPrefix)},
				active: src.Active,
			})
		}
	}
	return out, nil
}

// sourcingAccounts lists the accounts in which the server named me leads
// a stream EVENTS or METRICS with sources in other domains, by a look at
// every account's streams (streamsLook): in operator mode, the tenants
// whose sources it watches.
func sourcingAccounts(info *server.JSInfo, me string) []string {
	var out []string
	for _, ad := range info.AccountDetails {
		for _, sd := range ad.Streams {
			leads := sd.Cluster == nil || sd.Cluster.Leader == me
			if leads && (sd.Name == bus.EventsStream || sd.Name == bus.MetricsStream) &&
				slices.ContainsFunc(sd.Sources, func(s *server.StreamSourceInfo) bool { return s.External != nil }) {
				out = append(out, ad.Id) // Name is the account's name tag
				break
			}
		}
	}
	return out
}

// nudgeSource wakes a source that waits on its site (see above): it asks
// the site at once instead of at the consumer's next heartbeat. A source
// ignores a message that is neither its consumer's delivery nor its
// heartbeat, so the nudge is harmless to a source already resumed.
func nudgeSource(nc *nats.Conn, k sourceKey) {
	_ = nc.Publish(bus.SourceDeliverSubject(k.site, k.stream), nil)
}

// forgedHeartbeat is an idle heartbeat as a source's consumer sends it
// (status 100, no reply, no payload), naming as the consumer's last
// delivery a sequence no delivery to central reaches. A source that takes
// it asks the site again at once, from after the last message central
// stored of it, as it does when its consumer's own heartbeat names a
// delivery it did not get (processInboundSourceMsg,
// retrySourceConsumerAtSeq; the request leaves 0.1-0.2 s later, or once 2
// s have passed since the source's last one). A source that waits on its
// site takes it as it takes a nudge.
//
// Sent when a site comes back within reach after its source has missed a
// heartbeat (sourceMissedBeat), it spares the source the wait for the
// consumer's next heartbeat, up to a second: the consumer's deliveries
// into the cut were lost, or it stalled on a flow-control request nobody
// got, and only its heartbeat would tell central so. It is not a message
// nats.go can send (its headers open with a bare "NATS/1.0"), so it goes
// over a raw in-process connection (publishRaw).
const forgedHeartbeat = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4611686018427387904\r\n\r\n"

// sourceMissedBeat is how long a source goes without a word from its
// site's consumer only when it missed a heartbeat (one a second).
const sourceMissedBeat = 1500 * time.Millisecond

// retrySources sends each source of keys the forged heartbeat, over one raw
// in-process connection to srv as auth.
func retrySources(srv *server.Server, auth rawAuth, keys []sourceKey) error {
	subjects := make([]string, 0, len(keys))
	for _, k := range keys {
		subjects = append(subjects, bus.SourceDeliverSubject(k.site, k.stream))
	}
	return publishRaw(srv, auth, "meshmon-peer-sources-retry", forgedHeartbeat, subjects, answerWithin)
}

// siteAnswers asks the site's JetStream for the source's stream and
// reports whether it answered within within. The answer comes to inbox,
// a subject the site's link carries back to central.
func siteAnswers(nc *nats.Conn, k sourceKey, inbox string, within time.Duration) bool {
	_, err := askSite(nc, siteInfoSubject(k.site, k.stream), inbox, nil, within)
	return err == nil
}

// deliveryKind is what a message on a source consumer's deliver subject is.
type deliveryKind int

const (
	deliveryOther       deliveryKind = iota // a heartbeat not stalled, a nudge
	deliveryMessage                         // a stored message, to acknowledge
	deliveryFlowControl                     // a flow-control request: reply to unstall
	deliveryStalled                         // a heartbeat naming the request it is stalled on
)

// classifyDelivery tells what m, taken on a deliver subject, is, and where
// an answer that unstalls the consumer goes (flow control and stalled
// heartbeats only).
func classifyDelivery(m *nats.Msg) (deliveryKind, string) {
	switch {
	case strings.HasPrefix(m.Reply, flowControlPrefix):
		return deliveryFlowControl, m.Reply
	case strings.HasPrefix(m.Reply, ackPrefix):
		return deliveryMessage, ""
	case m.Header.Get(stalledHeader) != "":
		return deliveryStalled, m.Header.Get(stalledHeader)
	}
	return deliveryOther, ""
}

// unstall answers a consumer's flow-control request (or the one its
// heartbeat names) as JetStream's source does: an empty message, which
// acknowledges nothing.
func unstall(nc *nats.Conn, reply string) { _ = nc.Publish(reply, nil) }

// pendingSourceRequests reports the reply subjects of the requests for
// their consumers that central's sources in account have out, by source
// (see above).
func pendingSourceRequests(srv *server.Server, account string) (map[sourceKey]string, error) {
	sz, err := srv.Subsz(&server.SubszOptions{Account: account, Subscriptions: true, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	out := map[sourceKey]string{}
	for _, sd := range sz.Subs {
		t := strings.Split(sd.Subject, ".")
		if len(t) == 7 && t[0] == "$JSC" && t[1] == "R" && t[5] == bus.SourceConsumer(t[4]) {
			out[sourceKey{stream: t[4], site: t[2]}] = sd.Subject
		}
	}
	return out, nil
}

// resendSourceRequest sends the site of k the reset request its source
// has out, with the source's own reply: the site answers the source,
// which takes the answer as the one to its request. For a request lost
// in a cut, this spares the source the rest of its 5 s wait.
func resendSourceRequest(nc *nats.Conn, k sourceKey, reply string) error {
	m := nats.NewMsg("$JS." + k.site + ".API.CONSUMER.RESET." + k.stream + "." + bus.SourceConsumer(k.stream))
	m.Reply = reply
	// Asks the site to name its stream's identity in the answer, as the
	// source's own request does: the source compares it with the one it
	// knows, to tell a stream made again.
	m.Header.Set("Nats-Stream-Identity", "?")
	return nc.PublishMsg(m)
}
