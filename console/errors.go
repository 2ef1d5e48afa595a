package console

import "errors"

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("invalid console config")

// errNotFound is a page's answer for a site or device the credential does
// not reach: the same whether it is another tenant's or none at all.
var errNotFound = errors.New("not found")

// errBadInput is a request whose parameters break a rule; the message
// names the field.
var errBadInput = errors.New("bad input")
