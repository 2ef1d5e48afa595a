// Package tenancy keeps meshmon's accounts: the operator, the system and ops
// accounts and one NATS account per tenant, with their keys in a local key
// store directory, the way nsc does. It signs account and user JWTs; peers
// only ever see the JWTs (see Trust), never a signing key.
package tenancy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// The key store's layout, under its directory (0700; every file 0600):
//
//	operator.nk, operator.jwt        the operator's identity key and JWT
//	system/ , ops/                   the system and ops accounts
//	tenants/<tenant>/                one directory per tenant
//
// and in each account's directory: account.nk (its identity key),
// signing.nk (the key its users are signed with), account.jwt, users.json
// (the users issued, so that they can be revoked by name).
const (
	operatorKey   = "operator.nk"
	operatorJWT   = "operator.jwt"
	systemDir     = "system"
	opsDir        = "ops"
	tenantsDir    = "tenants"
	accountKey    = "account.nk"
	signingKey    = "signing.nk"
	accountJWT    = "account.jwt"
	usersFile     = "users.json"
	SystemAccount = "SYS" // the system account's name in its JWT
	OpsAccount    = "ops" // the ops (MSP operator) account's name
)

// Store is a key store directory made by Init. Its methods are not safe for
// concurrent use by several processes: one operator runs the CLI at a time.
type Store struct {
	dir string
	now func() time.Time
}

// Init creates a key store in dir: an operator named operator, a system
// account and an ops account, each with an identity and a signing key. dir
// must not exist or be empty; it fails with an error wrapping ErrExists
// otherwise, so a second init never replaces the keys of the first.
func Init(dir, operator string) (*Store, error) {
	if operator == "" {
		return nil, errors.New("init: the operator name is empty")
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("init %s: %w: it already holds a key store or other files", dir, ErrExists)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	s := &Store{dir: dir, now: time.Now}
	op, err := nkeys.CreateOperator()
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := s.writeKey(operatorKey, op); err != nil {
		return nil, err
	}
	opPub, _ := op.PublicKey()
	sys, err := s.newAccount(systemDir, SystemAccount, nil)
	if err != nil {
		return nil, err
	}
	if _, err := s.newAccount(opsDir, OpsAccount, nil); err != nil {
		return nil, err
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = operator
	oc.SystemAccount = sys
	tok, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("init: operator JWT: %w", err)
	}
	if err := s.writeFile(operatorJWT, []byte(tok)); err != nil {
		return nil, err
	}
	return s, nil
}

// Open opens the key store in dir. It fails with an error wrapping
// ErrNoStore when dir holds none, and ErrPermissions when dir or a key is
// readable by others than its owner.
func Open(dir string) (*Store, error) {
	fi, err := os.Stat(filepath.Join(dir, operatorKey))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key store %s: %w; create one with meshmon init --keys %s", dir, ErrNoStore, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("key store %s: %w", dir, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key store %s: %w: %s is mode %04o; chmod 600 it", dir, ErrPermissions, operatorKey, fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("key store %s: %w", dir, err)
	}
	if di.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key store %s: %w: the directory is mode %04o; chmod 700 it", dir, ErrPermissions, di.Mode().Perm())
	}
	return &Store{dir: dir, now: time.Now}, nil
}

// Dir is the key store's directory.
func (s *Store) Dir() string { return s.dir }

// newAccount creates an account in sub with an identity and a signing key,
// signs its JWT with the operator's key and returns its public key. limits
// nil gives an account without JetStream.
func (s *Store) newAccount(sub, name string, limits *Limits) (string, error) {
	if err := os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
		return "", fmt.Errorf("account %s: %w", name, err)
	}
	id, err := nkeys.CreateAccount()
	if err != nil {
		return "", fmt.Errorf("account %s: %w", name, err)
	}
	sk, err := nkeys.CreateAccount()
	if err != nil {
		return "", fmt.Errorf("account %s: %w", name, err)
	}
	if err := s.writeKey(filepath.Join(sub, accountKey), id); err != nil {
		return "", err
	}
	if err := s.writeKey(filepath.Join(sub, signingKey), sk); err != nil {
		return "", err
	}
	pub, _ := id.PublicKey()
	skPub, _ := sk.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(skPub)
	if limits != nil { // a tenant
		limits.apply(ac)
	}
	if err := s.saveAccount(sub, ac); err != nil {
		return "", err
	}
	return pub, nil
}

// saveAccount signs ac with the operator's key and writes it to sub.
func (s *Store) saveAccount(sub string, ac *jwt.AccountClaims) error {
	tok, err := s.signAccount(sub, ac)
	if err != nil {
		return err
	}
	return s.writeFile(filepath.Join(sub, accountJWT), []byte(tok))
}

// signAccount signs the claims of the account in sub, with what every
// account of its kind carries set (saveAccount).
func (s *Store) signAccount(sub string, ac *jwt.AccountClaims) (string, error) {
	op, err := s.readKey(operatorKey)
	if err != nil {
		return "", err
	}
	switch {
	case sub == opsDir:
		exportOps(ac)
	case strings.HasPrefix(sub, tenantsDir+string(filepath.Separator)):
		// Every signature of a tenant, a tenant signed by a release
		// before included, gives it the ops view's imports.
		ops, _, err := s.account(opsDir)
		if err != nil {
			return "", err
		}
		signTenant(ac, filepath.Base(sub), ops.Subject)
	}
	ac.IssuedAt = 0 // Encode sets it; two saves in one second still differ by content
	tok, err := ac.Encode(op)
	if err != nil {
		return "", fmt.Errorf("account %s: sign: %w", ac.Name, err)
	}
	return tok, nil
}

// account reads the claims of the account in sub, and its JWT.
func (s *Store) account(sub string) (*jwt.AccountClaims, string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, sub, accountJWT))
	if err != nil {
		return nil, "", fmt.Errorf("account %s: %w", sub, err)
	}
	ac, err := jwt.DecodeAccountClaims(string(b))
	if err != nil {
		return nil, "", fmt.Errorf("account %s: %w", sub, err)
	}
	return ac, string(b), nil
}

// users reads the users issued in the account in sub.
func (s *Store) users(sub string) ([]User, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, sub, usersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("users of %s: %w", sub, err)
	}
	var us []User
	if err := json.Unmarshal(b, &us); err != nil {
		return nil, fmt.Errorf("users of %s: %w", sub, err)
	}
	return us, nil
}

func (s *Store) saveUsers(sub string, us []User) error {
	b, err := json.MarshalIndent(us, "", "  ")
	if err != nil {
		return err
	}
	return s.writeFile(filepath.Join(sub, usersFile), b)
}

func (s *Store) writeKey(name string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("key %s: %w", name, err)
	}
	return s.writeFile(name, seed)
}

func (s *Store) readKey(name string) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return kp, nil
}

// writeFile writes b to name in the store (WriteFile).
func (s *Store) writeFile(name string, b []byte) error {
	if err := WriteFile(filepath.Join(s.dir, name), b); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// WriteFile writes b to path, mode 0600, through a new temporary file in
// the same directory that is renamed over path: a crash never leaves half a
// key or half a JWT, and a file that path held before, whatever its mode,
// is replaced rather than rewritten, so the secret is never readable by
// others, not even for a moment.
func WriteFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(0o600); err != nil { // whatever the umask or the platform did
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
