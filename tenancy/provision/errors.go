package provision

import "errors"

// ErrHoldsData is wrapped by Remove when the tenant still holds events or
// samples and force is not set.
var ErrHoldsData = errors.New("tenant holds data")

// errNoTenants: TailTenants of a key store without tenants.
var errNoTenants = errors.New("the key store has no tenants; 'meshmon tenant create NAME' creates one")
