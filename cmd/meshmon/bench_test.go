package main

import (
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bench"
)

func size(devices int, interval time.Duration) bench.FailoverSize {
	return bench.FailoverSize{Devices: devices, Interval: interval}
}

func TestFailoverSizes(t *testing.T) {
	for _, tc := range []struct {
		devices, intervals string
		want               []bench.FailoverSize
		err                string // in the error, which names the flag
	}{
		{"60", "1s", []bench.FailoverSize{size(60, time.Second)}, ""},
		{"60,1500,10000", "1s,5s,60s", []bench.FailoverSize{size(60, time.Second), size(1500, 5*time.Second), size(10000, time.Minute)}, ""},
		{"60, 1500", "5s", []bench.FailoverSize{size(60, 5*time.Second), size(1500, 5*time.Second)}, ""},
		{"60,1500,10000", "1s,5s", nil, `--interval "1s,5s": 2 intervals for the 3 sizes of --devices`},
		{"60,x", "1s", nil, `--devices "60,x": "x" is not a device count`},
		{"60,,1500", "1s", nil, `--devices "60,,1500": "" is not a device count`},
		{"0", "1s", nil, `--devices "0": "0" is not a device count`},
		{"", "1s", nil, `--devices "": "" is not a device count`},
		{"60", "500ms", nil, `--interval "500ms": "500ms" is not an interval of 1s or more`},
		{"60,1500", "1s,soon", nil, `--interval "1s,soon": "soon" is not an interval`},
	} {
		got, err := failoverSizes(tc.devices, tc.intervals)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %q: error %v, want one with %q", tc.devices, tc.intervals, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%q %q: %v, %v; want %v", tc.devices, tc.intervals, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q %q: size %d is %v, want %v", tc.devices, tc.intervals, i, got[i], tc.want[i])
			}
		}
	}
}
