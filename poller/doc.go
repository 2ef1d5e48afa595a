// Package poller watches devices: it schedules SNMP and ICMP probes, receives
// traps, turns what it observes into events and metric samples, and hands them
// to a publisher through a crash-safe local spool, so nothing it observed is
// lost while its peer is away or it restarts.
//
// The poller depends on small interfaces it defines (Publisher, Inventory,
// Registry); it never imports the peer package.
package poller
