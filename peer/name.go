package peer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshmon/meshmon/pki"
)

// nameFile is where a site peer given no name keeps the one it made
// (siteServerName), in its data dir.
const nameFile = "server-name"

// nameSuffixLen is how many random characters follow a made name's site:
// 50 bits, from base32's alphabet.
const nameSuffixLen = 10

// siteServerName returns the server name of a site peer that was given
// none: the one it made at an earlier start, kept in dataDir, or a new one,
// its site's name and a random suffix ("s1-k3v7q2m9xa"), which it keeps
// there. Central drops a site's link when another leaf connection arrives
// with the same server name in the same account (nats-server replaces a
// stale link so), whoever dials it: under the site's own name, which the
// tenant's other sites know, a site in hostile hands could keep any other
// site of its tenant off central; a made name is not known to them
// (docs/security.md).
//
// A member of a site cluster whose store was made before this (under the
// old default, its site's name) keeps its site's name, and reports it as
// old: its cluster's Raft groups know it by that name.
func siteServerName(dataDir, site string, clustered bool) (name string, old bool, err error) {
	path := filepath.Join(dataDir, nameFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		name = strings.TrimSpace(string(b))
		if name == "" || strings.ContainsAny(name, " \t\r\n") {
			return "", false, fmt.Errorf("%s holds no server name; remove it (a new one is made) or give --name", path)
		}
		return name, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("server name: %w", err)
	}
	if clustered {
		if _, err := os.Stat(Config{DataDir: dataDir}.StoreDir()); err == nil {
			return site, true, nil
		}
	}
	name = site + "-" + strings.ToLower(rand.Text()[:nameSuffixLen])
	if err := pki.WriteSecret(path, []byte(name+"\n")); err != nil {
		return "", false, fmt.Errorf("server name: %w", err)
	}
	return name, false, nil
}
