// Package pki is the mesh's certificate authority: it makes the CA, issues
// the certificates peers serve and present (ECDSA P-256), and loads them.
// Every link of the mesh is TLS verified against this CA: clients and sites
// verify the peers they dial, and route members verify each other.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// Validities of what this package makes.
const (
	// CAValidity is how long a CA made by NewCA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// CertValidity is how long an issued certificate is valid by default.
	CertValidity = 397 * 24 * time.Hour
)

// File names inside a CA directory and an issued certificate's directory.
const (
	CAFile   = "ca.pem"
	CAKey    = "ca-key.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA makes a self-signed CA named name, valid from now for CAValidity.
func NewCA(name string, now time.Time) (*CA, error) {
	if strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("%w: CA name is empty", ErrInvalid)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"meshmon"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issued is a certificate issued by a CA, PEM encoded.
type Issued struct {
	CertPEM, KeyPEM []byte
}

// Issue issues a certificate for name, valid for the DNS names and IP
// addresses in hosts, from now for validity (CertValidity when 0). It is
// good for both ends of a TLS connection, since a peer serves clients and
// also dials its route members and central.
func (ca *CA) Issue(name string, hosts []string, now time.Time, validity time.Duration) (Issued, error) {
	if strings.TrimSpace(name) == "" {
		return Issued{}, fmt.Errorf("%w: certificate name is empty", ErrInvalid)
	}
	if len(hosts) == 0 {
		return Issued{}, fmt.Errorf("%w: no host: give the DNS names and IP addresses clients dial, like central1.example.net,10.0.0.5", ErrInvalid)
	}
	if validity == 0 {
		validity = CertValidity
	}
	if validity < 0 {
		return Issued{}, fmt.Errorf("%w: validity %s must be positive", ErrInvalid, validity)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"meshmon"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if na := ca.Cert.NotAfter; tmpl.NotAfter.After(na) {
		tmpl.NotAfter = na
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		case validDNSName(h):
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		default:
			return Issued{}, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrInvalid, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Issued{}, fmt.Errorf("key: %w", err)
	}
	return Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// validDNSName reports whether h may stand in a certificate's DNS names: a
// host name without the trailing dot, or a wildcard "*." before one.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	return h != "" && !strings.HasSuffix(h, ".") && meshmon.ValidHostname(h)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// KeyPEM returns the CA's private key, PEM encoded.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Save writes the CA into dir (CAFile, and CAKey with mode 0600). It
// refuses to replace a CA that is there already: every certificate it
// issued would stop verifying.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca dir: %w", err)
	}
	for _, f := range []string{CAFile, CAKey} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%w: %s exists already; a new CA would invalidate every certificate the old one issued (remove it first if that is what you want)", os.ErrExist, filepath.Join(dir, f))
		}
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	if err := WriteSecret(filepath.Join(dir, CAKey), kp); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, CAFile), ca.CertPEM, 0o644)
}

// LoadCA reads the CA that Save wrote into dir.
func LoadCA(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, CAKey))
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	certs, err := ParseCerts(cb)
	if err != nil || len(certs) != 1 || !certs[0].IsCA {
		return nil, fmt.Errorf("%w: %s holds no CA certificate", ErrInvalid, filepath.Join(dir, CAFile))
	}
	key, err := parseECKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, filepath.Join(dir, CAKey), err)
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrInvalid, CAKey, CAFile)
	}
	return &CA{Cert: certs[0], Key: key, CertPEM: cb}, nil
}

func parseECKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ek, nil
}

// ParseCerts reads every certificate of a PEM bundle.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no certificate in PEM", ErrInvalid)
	}
	return out, nil
}

// Pool returns a cert pool of the CA certificates in a PEM bundle (one CA,
// or the old and the new one during a CA rotation).
func Pool(pemBytes []byte) (*x509.CertPool, error) {
	certs, err := ParseCerts(pemBytes)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// PoolFile is Pool of a file.
func PoolFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca file: %w", err)
	}
	p, err := Pool(b)
	if err != nil {
		return nil, fmt.Errorf("ca file %s: %w", path, err)
	}
	return p, nil
}

// WriteSecret writes a file that holds a secret with mode 0600, also when it
// replaces an existing file of another mode (the mode is set before the
// secret is written).
func WriteSecret(path string, b []byte) error { return WriteFile(path, b, 0o600) }

// WriteFile writes b to path with mode perm, whether or not path exists:
// through a temporary file in the same directory, chmodded, synced and
// renamed over path.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := writeSync(f, b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

// CheckPair reports whether certPEM and keyPEM are a certificate and its
// key, and that the certificate is signed by a CA of caPEM when caPEM is
// not empty.
func CheckPair(certPEM, keyPEM, caPEM []byte) error {
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(caPEM) > 0 {
		pool, err := Pool(caPEM)
		if err != nil {
			return err
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: the certificate is not of this CA: %v", ErrInvalid, err)
		}
	}
	return nil
}
