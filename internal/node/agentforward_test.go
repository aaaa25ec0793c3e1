//go:build integration

package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// localAgent serves an in-memory keyring holding one key on a Unix socket,
// standing in for the user's ssh-agent.
func localAgent(t *testing.T) (sock string, fingerprint string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv, Comment: "forwarded-test-key"}); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = agent.ServeAgent(kr, c)
			})
		}
	})
	return sock, ssh.FingerprintSHA256(signer.PublicKey())
}

func TestAgentForwarding(t *testing.T) {
	ensureTestUser(t)
	sock, fp := localAgent(t)
	for _, allowed := range []bool{true, false} {
		t.Run("allowed="+strconv.FormatBool(allowed), func(t *testing.T) {
			e := newEnv(t)
			e.setAuthz(func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
				p, _ := allowAll(ctx, req)
				p.ForwardAgent = allowed
				return p, nil
			})
			id := e.newIdentity(certOpts{principals: []string{testUser}})
			// The node-side ssh-add runs as the unprivileged user.
			args := e.sshOpts(id)
			for i, a := range args {
				if a == "IdentityAgent=none" {
					args[i] = "IdentityAgent=" + sock
				}
			}
			args = append(args, "-A", "-p", strconv.Itoa(e.addr.Port), testUser+"@127.0.0.1",
				`echo "sock=${SSH_AUTH_SOCK:-none}"; ssh-add -l`)
			r := e.run(nil, "ssh", args...)
			if allowed {
				if r.code != 0 || !strings.Contains(r.stdout, fp) || !strings.Contains(r.stdout, "forwarded-test-key") {
					t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
				return
			}
			if !strings.Contains(r.stdout, "sock=none") || strings.Contains(r.stdout, fp) {
				t.Fatalf("agent forwarded without permission: %q", r.stdout)
			}
		})
	}
}
