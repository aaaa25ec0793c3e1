//go:build integration

package node

import (
	"testing"
)

// BenchmarkExecTrue measures a full connection: handshake, certificate
// authentication, authorization, one session running `true`, close.
func BenchmarkExecTrue(b *testing.B) {
	ensureTestUser(b)
	e := newEnv(b)
	login := testUser // root's ~/.bashrc here is slow (pyenv) and bash sources it under ssh
	id := e.newIdentity(certOpts{principals: []string{login}})
	b.ResetTimer()
	for b.Loop() {
		c, err := e.client(id, login)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		s.Close()
		c.Close()
	}
}

// BenchmarkExecTrueReuseConn runs `true` in new sessions over one
// connection, isolating per-session cost (process start as the user).
func BenchmarkExecTrueReuseConn(b *testing.B) {
	ensureTestUser(b)
	e := newEnv(b)
	login := testUser // root's ~/.bashrc here is slow (pyenv) and bash sources it under ssh
	id := e.newIdentity(certOpts{principals: []string{login}})
	c, err := e.client(id, login)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
