package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files are the paths of an issued certificate's files in its directory.
type Files struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// Write writes the issued certificate into dir, which must exist:
// CertFile, KeyFile (mode 0600) and caPEM, the certificate of the CA that
// issued it, as CAFile. Writing into the same dir again rotates the
// certificate.
func (is Issued) Write(dir string, caPEM []byte) (Files, error) {
	files := Files{Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile), CA: filepath.Join(dir, CAFile)}
	if err := WriteSecret(files.Key, is.KeyPEM); err != nil {
		return Files{}, err
	}
	if err := WriteFile(files.Cert, is.CertPEM, 0o644); err != nil {
		return Files{}, err
	}
	if err := WriteFile(files.CA, caPEM, 0o644); err != nil {
		return Files{}, err
	}
	return files, nil
}

// InitCA makes a new CA named name and saves it into dir (refusing to
// replace one there), returning the path of its certificate.
func InitCA(dir, name string, now time.Time) (string, error) {
	ca, err := NewCA(name, now)
	if err != nil {
		return "", err
	}
	if err := ca.Save(dir); err != nil {
		return "", fmt.Errorf("mesh CA: %w", err)
	}
	return filepath.Join(dir, CAFile), nil
}

// Loopback makes a CA of its own in dir/ca and issues name a certificate
// for 127.0.0.1, localhost and ::1 into dir/name: TLS for a mesh that runs
// on one machine (meshmon demo).
func Loopback(dir, name string, now time.Time) (Files, error) {
	ca, err := NewCA("meshmon demo CA", now)
	if err != nil {
		return Files{}, err
	}
	if err := ca.Save(filepath.Join(dir, "ca")); err != nil {
		return Files{}, err
	}
	is, err := ca.Issue(name, []string{"127.0.0.1", "localhost", "::1"}, now, 0)
	if err != nil {
		return Files{}, err
	}
	out := filepath.Join(dir, name)
	if err := os.MkdirAll(out, 0o700); err != nil {
		return Files{}, err
	}
	return is.Write(out, ca.CertPEM)
}
