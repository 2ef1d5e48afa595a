package console

import (
	"errors"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// tenantsStub is a central's reader of the tenants' streams that lists
// and reads nothing real.
type tenantsStub struct {
	ops     string
	tenants map[string]uint64
}

func (ts tenantsStub) OpsAccount() string                  { return ts.ops }
func (ts tenantsStub) Tenants() (map[string]uint64, error) { return ts.tenants, nil }
func (ts tenantsStub) JetStream(string) (jetstream.JetStream, error) {
	return nil, errors.New("not in this test")
}

// TestFeedsOfTheOpsAccountOnly: central reads the tenants' streams for a
// session of the ops account's credential; one that looks like it (no
// tenant role) but is of another account gets none.
func TestFeedsOfTheOpsAccountOnly(t *testing.T) {
	s := &Server{cfg: Config{Tenants: tenantsStub{ops: "AOPS", tenants: map[string]uint64{"beta": 4, "acme": 3}}}}
	for _, tc := range []struct {
		who    viewer
		filter eventFilter
		want   []string
	}{
		{who: viewer{Ops: true, Account: "AOPS"}, want: []string{"acme", "beta"}},
		{who: viewer{Ops: true, Account: "AOPS"}, filter: eventFilter{Tenant: "beta"}, want: []string{"beta"}},
		{who: viewer{Ops: true, Account: "ATENANT"}},
		{who: viewer{Ops: true}},
	} {
		feeds, _, err := s.feeds(t.Context(), &session{who: tc.who}, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, fd := range feeds {
			got = append(got, fd.tenant)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("feeds of %+v (%+v): %v, want %v", tc.who, tc.filter, got, tc.want)
		}
	}
}
