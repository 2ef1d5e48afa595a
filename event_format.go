package meshmon

import (
	"fmt"
)

// FormatEvent renders an event published on subject for people, in one
// line: local time, site/device, kind, severity, message. Data that is not
// an event is shown as it is, after its subject.
func FormatEvent(subject string, data []byte) string {
	var ev Event
	if err := DecodeEvent(data, &ev); err != nil || ev.Data.Kind == "" {
		return fmt.Sprintf("%s  %s", subject, data)
	}
	return fmt.Sprintf("%s  %-24s %-17s %-8s %s",
		ev.Time.Local().Format("15:04:05.000"), ev.Data.Site+"/"+ev.Data.Device, ev.Data.Kind, ev.Data.Severity, ev.Data.Message)
}
