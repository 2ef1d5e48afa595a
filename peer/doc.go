// Package peer runs meshmon's embedded nats-server: one JetStream server
// per peer process, configured from a plain Config, logging through slog,
// with the meshmon streams and KV buckets ensured on start. Pollers never
// import it; they reach a peer through package bus.
package peer
