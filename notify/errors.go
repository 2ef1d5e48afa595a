package notify

import "errors"

// Errors of this package; tests match them with errors.Is.
var (
	// ErrInvalid is wrapped by every error of a bad channel or rule: the
	// message names the field and the rule it broke.
	ErrInvalid = errors.New("notify")
	// ErrNoStartTLS is returned by an email send when the SMTP server
	// offers no STARTTLS and the channel does not allow plaintext.
	ErrNoStartTLS = errors.New("the SMTP server offers no STARTTLS (allow plaintext on the channel only for a relay on a trusted network)")
	// ErrStatus is wrapped by a webhook send that the receiver answered
	// with a status other than 2xx.
	ErrStatus = errors.New("receiver refused the notification")
)
