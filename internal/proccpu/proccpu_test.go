//go:build unix

package proccpu

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestUsedGrows: work on the CPU shows in Used.
func TestUsedGrows(t *testing.T) {
	before := Used()
	if before <= 0 {
		t.Fatalf("Used = %v at the start; a running process has used some CPU", before)
	}
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(30 * time.Second)
	for Used() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("Used stayed at %v through 30 s of hashing", before)
		}
		for range 10000 {
			sum = sha256.Sum256(sum[:])
		}
	}
}
