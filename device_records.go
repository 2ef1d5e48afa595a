package meshmon

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Masked is what Redacted puts in place of a secret.
const Masked = "********"

// Redacted is d with its SNMP community and v3 passwords masked, as
// commands print devices; the inventory keeps the secrets.
func (d Device) Redacted() Device {
	if d.SNMP == nil {
		return d
	}
	s := *d.SNMP
	for _, p := range []*string{&s.Community, &s.AuthPassword, &s.PrivPassword} {
		if *p != "" {
			*p = Masked
		}
	}
	d.SNMP = &s
	return d
}

// Summary is s in one short column: "-" for none, "v2c:161", or
// "v3:161 user=U authPriv".
func (s *SNMP) Summary() string {
	if s == nil {
		return "-"
	}
	port := fmt.Sprintf(":%d", s.PortOrDefault())
	if s.Version == SNMPv3 {
		return fmt.Sprintf("v3%s user=%s %s", port, s.User, s.SecurityLevel())
	}
	return "v" + s.Version + port
}

// ParseDevices reads devices from JSON, one device object or a list, as
// 'meshmon device list --json --show-secrets' prints them. Unknown fields
// are errors, revisions are cleared, and every device is validated and
// refused if a secret in it is Masked (an export without its secrets)
// before any is returned.
func ParseDevices(b []byte) ([]Device, error) {
	var devs []Device
	var err error
	trimmed := strings.TrimSpace(string(b))
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if strings.HasPrefix(trimmed, "[") {
		err = dec.Decode(&devs)
	} else {
		var d Device
		err = dec.Decode(&d)
		devs = []Device{d}
	}
	if err != nil {
		return nil, fmt.Errorf("not a device or a list of devices: %w", err)
	}
	for i := range devs {
		d := &devs[i]
		d.Revision = 0
		if err := d.Validate(); err != nil {
			return nil, err
		}
		if s := d.SNMP; s != nil {
			for _, f := range []struct{ name, v string }{{"community", s.Community}, {"auth_password", s.AuthPassword}, {"priv_password", s.PrivPassword}} {
				if f.v == Masked {
					return nil, fmt.Errorf("device %s: snmp %s is masked (%s); export with 'device list --json --show-secrets'", d.Name, f.name, Masked)
				}
			}
		}
	}
	return devs, nil
}

// WriteDevices writes the table `meshmon device list` prints: one device
// a line, its SNMP settings summed up (no secret).
func WriteDevices(w io.Writer, devs []Device) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tCHECKS\tINTERVAL\tSNMP")
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Address, strings.Join(d.Checks, ","), d.Interval, d.SNMP.Summary())
	}
	return tw.Flush()
}

// WriteText writes d as `meshmon device show` prints it: a field a line,
// its SNMP settings summed up (no secret).
func (d Device) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\naddress:\t%s\nchecks:\t%s\ninterval:\t%s\ntimeout:\t%s\nretries:\t%d\nsnmp:\t%s\nrevision:\t%d\n",
		d.Name, d.Address, strings.Join(d.Checks, ","), d.Interval, d.TimeoutOrDefault(), d.Retries, d.SNMP.Summary(), d.Revision)
	if d.Parent != "" {
		fmt.Fprintf(tw, "parent:\t%s\n", d.Parent)
	}
	return tw.Flush()
}

// ReadDevices reads the devices of a JSON file as ParseDevices does
// ('meshmon device import FILE'); path "-" reads stdin.
func ReadDevices(path string, stdin io.Reader) ([]Device, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	devs, err := ParseDevices(b)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return devs, nil
}

// DeviceChange is what 'device add' and 'device rm' print: with --json as
// it is, else as WriteText has it.
type DeviceChange struct {
	Result string  `json:"result"` // added, replaced or removed
	Name   string  `json:"name,omitempty"`
	Device *Device `json:"device,omitempty"` // the device added or replaced, secrets masked
}

// NewDeviceChange is the change result made to d; secrets masked.
func NewDeviceChange(result string, d Device) DeviceChange {
	ch := DeviceChange{Result: result, Name: d.Name}
	if result != "removed" {
		r := d.Redacted()
		ch.Device = &r
	}
	return ch
}

// WriteText writes the change as one line.
func (ch DeviceChange) WriteText(w io.Writer) error {
	var err error
	if d := ch.Device; d != nil {
		_, err = fmt.Fprintf(w, "device %s %s (%s, checks %s, every %s)\n", d.Name, ch.Result, d.Address, strings.Join(d.Checks, ","), d.Interval)
	} else {
		_, err = fmt.Fprintf(w, "device %s %s\n", ch.Name, ch.Result)
	}
	return err
}
