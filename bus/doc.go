// Package bus is meshmon's view of NATS JetStream: the subject scheme, the
// EVENTS and METRICS streams and the KV buckets a peer creates, client
// connections, batched publishing with deterministic message ids, the
// device inventory, the poller registry and stream replay for tail and
// status. It talks to a server only through nats.go and its jetstream
// package; the embedded server itself lives in package peer.
package bus
