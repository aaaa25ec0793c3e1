package node

import (
	"testing"

	"github.com/warden-sh/warden/internal/sshtest"
)

// TestServerOffersModernAlgorithmsOnly enumerates the node's SSH server
// configuration as a client sees it (its KEXINIT): nothing weak.
func TestServerOffersModernAlgorithmsOnly(t *testing.T) {
	e := newEnv(t)
	k, err := sshtest.ServerKexInit(e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if weak := sshtest.Weak(k, true); len(weak) > 0 {
		t.Fatalf("the node offers weak algorithms: %v", weak)
	}
	// And the real OpenSSH client still connects.
	id := e.newIdentity(certOpts{principals: []string{currentLogin(t)}})
	if r := e.ssh(id, currentLogin(t), nil, "echo ok"); r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("ssh: %+v", r)
	}
}
