package client

import (
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/wire"
)

// SaveProfile writes a profile directory from certificates got other than
// by login (a bot's outputs, `warden bot start`): the same files as a login
// writes, each atomically and 0600 in a 0700 directory, the profile last.
// `warden --home DIR` then uses it as any profile.
func SaveProfile(dir, proxy, caFingerprint string, keyPEM []byte, pub ssh.PublicKey, resp *wire.LoginResponse) error {
	p := &Profile{Proxy: proxy, Cluster: resp.Cluster, User: resp.User, Roles: resp.Roles, Logins: resp.Logins,
		Expires: resp.Expires, CAFingerprint: caFingerprint, dir: dir}
	return save(dir, p, keyPEM, pub, resp)
}

// File names a profile directory holds, for tools that keep one.
const (
	ProfileKeyFile        = fileKey
	ProfileCertFile       = fileCert
	ProfileKnownHostsFile = fileKnownHosts
)
