package provision

import "errors"

// ErrHoldsData is wrapped by Remove when the tenant still holds events or
// samples and force is not set.
var ErrHoldsData = errors.New("tenant holds data")
