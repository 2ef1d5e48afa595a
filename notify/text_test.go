package notify_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/notify"
)

func TestParseStep(t *testing.T) {
	s, err := notify.ParseStep("15m=oncall")
	if err != nil || s.After != 15*time.Minute || s.Channel != "oncall" {
		t.Fatalf("15m=oncall: %+v, %v", s, err)
	}
	for _, bad := range []string{"oncall", "=oncall", "0s=oncall", "-1m=oncall", "soon=oncall"} {
		if _, err := notify.ParseStep(bad); !errors.Is(err, notify.ErrInvalid) || !strings.Contains(err.Error(), "AFTER=CHANNEL") {
			t.Errorf("%q: %v, want an error naming AFTER=CHANNEL", bad, err)
		}
	}
}

func TestParseSteps(t *testing.T) {
	steps, err := notify.ParseSteps([]string{"15m=oncall", "1h=manager"})
	if err != nil || len(steps) != 2 || steps[1].After != time.Hour || steps[1].Channel != "manager" {
		t.Fatalf("two steps: %+v, %v", steps, err)
	}
	if _, err := notify.ParseSteps([]string{"15m=oncall", "later"}); !errors.Is(err, notify.ErrInvalid) {
		t.Errorf("a bad second step: %v", err)
	}
}

func TestWriteRules(t *testing.T) {
	var b strings.Builder
	err := notify.WriteRules(&b, []notify.Rule{{Name: "noc", Sites: []string{"par"}, Channels: []string{"chat"}, Actions: true,
		Escalation: []notify.Step{{After: 15 * time.Minute, Channel: "oncall"}}, Settle: 45 * time.Second}})
	if err != nil || !strings.Contains(b.String(), "noc") || !strings.Contains(b.String(), "15m0s=oncall") || !strings.Contains(b.String(), "yes") ||
		!strings.Contains(b.String(), "45s") {
		t.Fatalf("%v:\n%s", err, b.String())
	}
}
