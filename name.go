package meshmon

import (
	"fmt"
	"unicode/utf8"
)

// MaxNameLen is the longest tenant, site or device name.
const MaxNameLen = 63

// ValidateName checks that s can be used as a tenant, site or device name,
// that is, as a single NATS subject token: [a-z0-9][a-z0-9_-]*, at most 63
// characters. field names what is being checked ("device", "site") and is
// part of the error. The error wraps ErrInvalidName and says which rule was
// broken.
func ValidateName(field, s string) error {
	fail := func(rule string) error {
		return fmt.Errorf("%w: %s %q %s", ErrInvalidName, field, s, rule)
	}
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty; use [a-z0-9][a-z0-9_-]*", ErrInvalidName, field)
	case !utf8.ValidString(s):
		return fail("is not valid UTF-8")
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s %q is %d characters; at most %d are allowed", ErrInvalidName, field, s, len(s), MaxNameLen)
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '_' || r == '-':
			if i == 0 {
				return fail("must start with a lowercase letter or digit")
			}
		case r == '.':
			return fail("must not contain '.' (it separates subject tokens)")
		case r == '*' || r == '>':
			return fail(fmt.Sprintf("must not contain the wildcard %q", r))
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			return fail("must not contain white space")
		case r >= 'A' && r <= 'Z':
			return fail("must be lowercase")
		case r > utf8.RuneSelf:
			return fail(fmt.Sprintf("must be ASCII; %q is not allowed", r))
		default:
			return fail(fmt.Sprintf("may contain only a-z, 0-9, '_' and '-'; %q is not allowed", r))
		}
	}
	return nil
}
