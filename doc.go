// Package meshmon holds the domain types every part of meshmon shares:
// names and their validation, devices, events, metric samples and the
// outgoing message unit. It does no I/O and imports nothing of the module.
package meshmon
