package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// survivorPhases reads from the logs of the members other than dead when,
// after killed, each got the first assignment without dead and how long
// it took to read the last states of the devices it gained and to take
// them over: the share of the failover on the survivors' side.
func (b *bench) survivorPhases(members []string, dead string, killed time.Time) string {
	var parts []string
	for _, m := range members {
		if m == dead {
			continue
		}
		assigned, took, read := b.logPhase(m, killed, len(members)-1)
		r := func(d time.Duration) string {
			if d <= 0 {
				return "-"
			}
			return d.Round(10 * time.Millisecond).String()
		}
		parts = append(parts, fmt.Sprintf("%s: assignment %s, states read %s, taken over %s", m, r(assigned), read, r(took)))
	}
	return strings.Join(parts, "; ")
}

// logPhase finds, in member's log, the first assignment of n members
// after killed and the first take-over after that.
func (b *bench) logPhase(member string, killed time.Time, n int) (assigned, took time.Duration, read string) {
	read = "-"
	f, err := os.Open(filepath.Join(b.dir, member+".log"))
	if err != nil {
		return 0, 0, read
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok || len(ts) < 24 {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0])
		if err != nil || at.Before(killed) {
			continue
		}
		switch {
		case assigned == 0 && strings.Contains(line, " msg=assignment ") && strings.HasSuffix(line, fmt.Sprintf(" members=%d", n)):
			assigned = at.Sub(killed)
		case assigned != 0 && strings.Contains(line, `msg="took devices over"`):
			took = at.Sub(killed)
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "read="); ok {
					read = v
				}
			}
			return assigned, took, read
		}
	}
	return assigned, took, read
}
