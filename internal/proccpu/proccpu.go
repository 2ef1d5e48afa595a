// Package proccpu reads the CPU time the process has used, for benchmarks
// that report cores or CPU per message beside their wall-clock figures.
package proccpu
