package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// IssuedFiles is a certificate IssueInto wrote: its name, the hosts it is
// valid for and its files.
type IssuedFiles struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
	Files
}

// IssueInto issues a certificate for each of names, valid for hosts from
// now for validity, and writes it with its key (mode 0600, also over an
// existing file) and the CA's certificate: one name into out itself;
// several each into out/NAME, valid for its name as a host too, with
// out/CAFile beside them for clients. Directories are made (0700) as
// needed. Hosts are trimmed of spaces, empty ones left out. Errors name
// the certificate and the flag of 'meshmon tls issue' at fault.
func (ca *CA) IssueInto(out string, names, hosts []string, now time.Time, validity time.Duration) ([]IssuedFiles, error) {
	var trimmed []string
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h != "" {
			trimmed = append(trimmed, h)
		}
	}
	hosts = trimmed
	var done []IssuedFiles
	for _, name := range names {
		dir, hs := out, hosts
		if len(names) > 1 {
			dir, hs = filepath.Join(out, name), append([]string{name}, hosts...)
		}
		files, err := ca.issueDir(name, hs, dir, now, validity)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		done = append(done, IssuedFiles{name, hs, files})
	}
	if len(names) > 1 {
		if err := WriteFile(filepath.Join(out, CAFile), ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
	}
	return done, nil
}

// WriteText writes what 'meshmon tls issue' prints of f: the flags a
// peer runs with.
func (f IssuedFiles) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "issued %s for %s:\n  --tls-cert %s --tls-key %s --tls-ca %s\n", f.Name, strings.Join(f.Hosts, ", "), f.Cert, f.Key, f.CA)
	return err
}

// WriteIssued writes each of done as WriteText does: what 'meshmon tls
// issue' prints.
func WriteIssued(w io.Writer, done []IssuedFiles) error {
	for _, f := range done {
		if err := f.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// OpenCA loads the CA saved in dir; with create, a CA named name is made
// and saved there when there is none.
func OpenCA(dir, name string, create bool, now time.Time) (*CA, error) {
	ca, err := LoadCA(dir)
	if err == nil || !create || !errors.Is(err, os.ErrNotExist) {
		return ca, err
	}
	if ca, err = NewCA(name, now); err != nil {
		return nil, err
	}
	return ca, ca.Save(dir)
}

// issueDir issues a certificate and writes it, its key and the CA into dir.
func (ca *CA) issueDir(name string, hosts []string, dir string, now time.Time, validity time.Duration) (Files, error) {
	if validity < 0 {
		return Files{}, errors.New("--validity must be more than 0")
	}
	is, err := ca.Issue(name, hosts, now, validity)
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("--out-dir: %w", err)
	}
	return is.Write(dir, ca.CertPEM)
}
