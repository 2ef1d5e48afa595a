package meshmon

// Subjects are meshmon's public API for NOC subscribers (see
// docs/subjects.md): change them only with the docs.

// EventSubject returns the subject of an event: ev.<site>.<device>.<kind>.
// The parts must be valid names (ValidateName); it does not check.
func EventSubject(site, device, kind string) string {
	return "ev." + site + "." + device + "." + kind
}

// MetricSubject returns the subject of a metric sample:
// mx.<site>.<device>.<check>.
func MetricSubject(site, device, check string) string {
	return "mx." + site + "." + device + "." + check
}
