package bus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshmon/meshmon"
)

// Stream, bucket and subject names. The subjects are meshmon's public API
// for NOC subscribers: see DESIGN.md before changing them.
const (
	// EventsStream holds events on ev.<site>.<device>.<kind>.
	EventsStream = "EVENTS"
	// MetricsStream holds metric samples on mx.<site>.<device>.<check>.
	MetricsStream = "METRICS"
	// DevicesBucket is the KV bucket of the device inventory, keyed by
	// device name.
	DevicesBucket = "devices"
	// PollersBucket is the KV bucket of poller heartbeats, keyed by site and
	// poller name (PollerKey); a key expires when its poller stops renewing
	// it.
	PollersBucket = "pollers"
	// GroupBucket is the KV bucket of a site's poller group: the leader's
	// lease (GroupLeaderKey) and the assignment (GroupAssignmentKey).
	GroupBucket = "group"

	// EventsSubjects is the subject filter of EventsStream.
	EventsSubjects = "ev.>"
	// MetricsSubjects is the subject filter of MetricsStream.
	MetricsSubjects = "mx.>"
)

// The keys of the poller group carry the site, and a heartbeat's the
// poller's name as well, so that a poller's credential can be allowed
// exactly its own heartbeat and its own site's group keys
// (tenancy's poller permissions): a credential of one site then writes
// nothing another site's pollers read, even at that site's peer, and a
// poller cannot write another's heartbeat.

// PollerKey is the key of a poller's heartbeat in PollersBucket:
// <site>.<poller>. The parts must be valid names (meshmon.ValidateName).
func PollerKey(site, poller string) string { return site + "." + poller }

// GroupLeaderKey is the key of the site's group leader lease in
// GroupBucket: <site>.leader.
func GroupLeaderKey(site string) string { return site + ".leader" }

// GroupAssignmentKey is the key of the site's group assignment in
// GroupBucket: <site>.assignment.
func GroupAssignmentKey(site string) string { return site + ".assignment" }

// KVSubject is the subject a write of key in bucket is published on.
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// StoredPrefix prefixes the subject on which a peer's EVENTS and METRICS
// republish each message as they store it: stored.ev.<site>.<device>.<kind>
// and stored.mx.<site>.<device>.<check>. A NOC's live feed and the ops
// view read it, never the raw subjects, so what a client publishes on
// ev.> at a peer where no stream takes it (a poller's credential used at
// central) reaches nobody; no user may publish on it.
const StoredPrefix = "stored."

// EventFilter returns a subject filter over events, with the wildcard "*"
// in place of every empty part: EventFilter("hq", "", "") is "ev.hq.*.*".
func EventFilter(site, device, kind string) string {
	return "ev." + orStar(site) + "." + orStar(device) + "." + orStar(kind)
}

// CheckedEventFilter is EventFilter of the parts a command was given
// (--site, --device, --kind), each checked: a kind among meshmon.Kinds,
// every part a name. Its errors name the flag.
func CheckedEventFilter(site, device, kind string) (string, error) {
	if kind != "" && !slices.Contains(meshmon.Kinds, kind) {
		return "", fmt.Errorf("--kind %q: not an event kind; kinds are %s", kind, strings.Join(meshmon.Kinds, ", "))
	}
	for _, f := range []struct{ name, v string }{{"site", site}, {"device", device}, {"kind", kind}} {
		if f.v == "" {
			continue
		}
		if err := meshmon.ValidateName(f.name, f.v); err != nil {
			return "", fmt.Errorf("--%s: %w", f.name, err)
		}
	}
	return EventFilter(site, device, kind), nil
}

// MetricFilter returns a subject filter over metric samples, with "*" in
// place of every empty part.
func MetricFilter(site, device, check string) string {
	return "mx." + orStar(site) + "." + orStar(device) + "." + orStar(check)
}

// StreamOf returns the name of the stream that takes messages of s, or ""
// if none of meshmon's streams does.
func StreamOf(s meshmon.Stream) string {
	switch s {
	case meshmon.StreamEvents:
		return EventsStream
	case meshmon.StreamMetrics:
		return MetricsStream
	}
	return ""
}

// StreamForSubject returns the stream that holds subject (a subject or
// filter a user gave), or "" if none of meshmon's streams does. Messages
// carry their stream: see StreamOf.
func StreamForSubject(subject string) string {
	switch {
	case strings.HasPrefix(subject, "ev."):
		return EventsStream
	case strings.HasPrefix(subject, "mx."):
		return MetricsStream
	}
	return ""
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
