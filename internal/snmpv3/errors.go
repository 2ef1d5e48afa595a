package snmpv3

import "errors"

// ErrBER is returned for a message that is not well-formed BER.
var ErrBER = errors.New("malformed BER")
