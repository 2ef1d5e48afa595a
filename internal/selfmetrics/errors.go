package selfmetrics

import "errors"

// ErrNoTLS is returned by Config.Validate when the listener has neither a
// certificate nor Plaintext.
var ErrNoTLS = errors.New("metrics listener has no certificate")

// The errors of Files: the --metrics-* flags that do not go together.
var (
	errPlaintextCert = errors.New("--metrics-plaintext with --metrics-tls-cert: give one or the other")
	errCertKey       = errors.New("--metrics-tls-cert and --metrics-tls-key go together; give both")
)
