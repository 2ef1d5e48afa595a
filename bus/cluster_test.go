package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestRemovePeerReply: a removal's error crosses the wire with its text and
// comes back wrapping the same sentinel; members come back as they went.
func TestRemovePeerReply(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		sentinel error // nil: no sentinel
	}{
		{"peer up", fmt.Errorf("%w: %q is a running member of cluster hub", ErrPeerUp, "c1"), ErrPeerUp},
		{"no such peer", fmt.Errorf("%w: %q is no member of cluster hub", ErrNoSuchPeer, "c9"), ErrNoSuchPeer},
		{"other", errors.New("remove peer: bad request"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(NewRemovePeerReply(nil, tt.err))
			if err != nil {
				t.Fatal(err)
			}
			var r RemovePeerReply
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			got := r.Err()
			if got == nil || got.Error() != tt.err.Error() {
				t.Fatalf("error %v, want %v", got, tt.err)
			}
			for _, s := range []error{ErrPeerUp, ErrNoSuchPeer} {
				if want := s == tt.sentinel; errors.Is(got, s) != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", got, s, !want, want)
				}
			}
		})
	}
	b, _ := json.Marshal(NewRemovePeerReply([]string{"c1", "c2"}, nil))
	var r RemovePeerReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Err() != nil || !slices.Equal(r.Members, []string{"c1", "c2"}) {
		t.Fatalf("a removal made: err %v, members %v", r.Err(), r.Members)
	}
}
