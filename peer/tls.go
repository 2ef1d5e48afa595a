package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/meshmon/meshmon/pki"
)

// TLS is the peer's certificate: what it serves on every listener (client,
// route, leaf, HTTP) and presents to its route members, and the mesh's CA,
// against which route members are verified both ways. 'meshmon tls issue'
// makes them.
type TLS struct {
	Cert string `json:"cert,omitempty"` // PEM certificate file
	Key  string `json:"key,omitempty"`  // PEM private key file
	CA   string `json:"ca,omitempty"`   // PEM file of the mesh's CA (or the old and new CA while rotating)
	// Watch is how often the peer looks at the certificate and key files
	// and reloads them when either changed; 0 means DefaultTLSWatch, a
	// negative value never (SIGHUP, Peer.ReloadTLS, still do).
	Watch time.Duration `json:"watch,omitempty"`
}

// DefaultTLSWatch is how often a peer looks for new certificate files.
const DefaultTLSWatch = 10 * time.Second

func (t TLS) watchEvery() time.Duration {
	if t.Watch == 0 {
		return DefaultTLSWatch
	}
	return t.Watch
}

// On reports whether a certificate is configured.
func (t TLS) On() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// stamp is what the watch compares: the files' sizes and modification
// times.
func (t TLS) stamp() string {
	var b []byte
	for _, f := range []string{t.Cert, t.Key} {
		if fi, err := os.Stat(f); err == nil {
			b = fmt.Appendf(b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return string(b)
}

func (t TLS) validate() error {
	if t.Cert == "" || t.Key == "" || t.CA == "" {
		return errors.New("tls: --tls-cert, --tls-key and --tls-ca go together; give all three ('meshmon tls issue' makes them)")
	}
	cb, err := os.ReadFile(t.Cert)
	if err != nil {
		return fmt.Errorf("tls cert: %w", err)
	}
	kb, err := os.ReadFile(t.Key)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	ca, err := os.ReadFile(t.CA)
	if err != nil {
		return fmt.Errorf("tls ca: %w", err)
	}
	if err := pki.CheckPair(cb, kb, ca); err != nil {
		return fmt.Errorf("tls cert %s: %w", t.Cert, err)
	}
	return nil
}

// certs holds the peer's certificate for every TLS listener and dial. The
// certificate is behind an atomic pointer that reload swaps, so new
// connections get the new certificate while those up stay up; the CA pool
// is read once at start (a CA rotation puts both CAs in the CA file first,
// see docs/security.md).
type certs struct {
	files TLS
	cert  atomic.Pointer[tls.Certificate]
	pool  *x509.CertPool
}

func loadCerts(files TLS) (*certs, error) {
	pool, err := pki.PoolFile(files.CA)
	if err != nil {
		return nil, err
	}
	k := &certs{files: files, pool: pool}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload reads the certificate and key files again. A pair that does not
// load, or is not of the CA, leaves the current certificate in place.
func (k *certs) reload() error {
	cb, err := os.ReadFile(k.files.Cert)
	if err != nil {
		return fmt.Errorf("tls cert: %w", err)
	}
	kb, err := os.ReadFile(k.files.Key)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	c, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return fmt.Errorf("tls cert %s: %w", k.files.Cert, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("tls cert %s: %w", k.files.Cert, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: k.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("tls cert %s: not of the CA in %s: %w", k.files.Cert, k.files.CA, err)
	}
	c.Leaf = leaf
	k.cert.Store(&c)
	return nil
}

func (k *certs) current() *tls.Certificate { return k.cert.Load() }

// server is the TLS config of a listener that clients dial: the peer's
// certificate, no client certificate asked for (clients authenticate with
// their credentials).
func (k *certs) server() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.current(), nil },
	}
}

// route is the TLS config of the route port, both ways: a member presents
// its certificate and accepts only a member with a certificate of the CA.
func (k *certs) route() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.current(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return k.current(), nil },
		ClientAuth:           tls.RequireAndVerifyClientCert,
		ClientCAs:            k.pool,
		RootCAs:              k.pool,
	}
}

// leafRemote is the TLS config of a site's link to central: central is
// verified against caPEM, the CA its join token pins.
func leafRemote(caPEM string) (*tls.Config, error) {
	pool, err := pki.Pool([]byte(caPEM))
	if err != nil {
		return nil, fmt.Errorf("central's CA (from the join token): %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}
