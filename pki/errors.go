package pki

import "errors"

// ErrInvalid is wrapped by the errors of bad input: a name or host that
// cannot go in a certificate, a file that holds no certificate or key.
var ErrInvalid = errors.New("pki")
