package eventually

import (
	"errors"
	"testing"
	"time"
)

func TestTrueAndNoErrorReturnOnceTheConditionHolds(t *testing.T) {
	n := 0
	True(t, time.Minute, "the third call", func() bool { n++; return n >= 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	n = 0
	NoError(t, time.Minute, "the third call", func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
}
