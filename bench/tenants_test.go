package bench

import (
	"os"
	"testing"
)

func TestDiskSyncRate(t *testing.T) {
	dir := t.TempDir()
	r, err := diskSyncRate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r <= 0 {
		t.Fatalf("rate %v, want fsynced appends a second", r)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("left %d files in the store's directory", len(left))
	}
	if _, err := diskSyncRate(dir + "/gone"); err == nil {
		t.Fatal("no error for a directory that does not exist")
	}
}

func TestPerSync(t *testing.T) {
	// Each run over the disk's rate before it: 0.5, 1, 2; the median is 1,
	// whatever the runs' own rates.
	if got := perSync([]float64{1000, 3000, 4000}, []float64{2000, 3000, 2000}); got != 1 {
		t.Fatalf("perSync = %v, want 1", got)
	}
}

func TestTenantsConfigSettle(t *testing.T) {
	bc := TenantsConfig{Tenants: 2, Msgs: 10, Size: 512, Disk: 64 << 20, NeighbourRate: 1, Settle: -1}
	if _, err := bc.validate(); err == nil {
		t.Fatal("a negative --settle was accepted")
	}
	bc.Settle = 0
	if _, err := bc.validate(); err != nil {
		t.Fatalf("--settle 0 (measure at once): %v", err)
	}
}
