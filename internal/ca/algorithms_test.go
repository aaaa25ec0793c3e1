package ca_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/sshtest"
)

// serve runs an SSH server with cfg on loopback until the test ends.
func serve(t *testing.T, cfg *ssh.ServerConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if sc, chans, reqs, err := ssh.NewServerConn(c, cfg); err == nil {
					go ssh.DiscardRequests(reqs)
					go func() {
						for nc := range chans {
							_ = nc.Reject(ssh.Prohibited, "no")
						}
					}()
					_ = sc.Wait()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestServerConfigOffersModernAlgorithmsOnly enumerates what a server set
// up by ca.ServerConfig offers (its KEXINIT): no NIST-curve or SHA-1 key
// exchange, AEAD ciphers only, ETM MACs only, no ssh-rsa host key
// signatures, even for RSA host keys and certificates.
func TestServerConfigOffersModernAlgorithmsOnly(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := ssh.NewSignerFromKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: rs.PublicKey(), CertType: ssh.HostCert, KeyId: "h", ValidPrincipals: []string{"127.0.0.1"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ed); err != nil {
		t.Fatal(err)
	}
	rsCert, err := ssh.NewCertSigner(cert, rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keys []ssh.Signer
	}{
		{"ed25519", []ssh.Signer{ed}},
		{"rsa", []ssh.Signer{rs}},
		{"rsa certificate", []ssh.Signer{rsCert}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &ssh.ServerConfig{NoClientAuth: true}
			if err := ca.ServerConfig(cfg, tc.keys...); err != nil {
				t.Fatal(err)
			}
			addr := serve(t, cfg)
			k, err := sshtest.ServerKexInit(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kex %v, host keys %v, ciphers %v, MACs %v", k.KexAlgos, k.ServerHostKeyAlgos, k.CiphersServerClient, k.MACsServerClient)
			if weak := sshtest.Weak(k, true); len(weak) > 0 {
				t.Fatalf("weak algorithms offered: %v", weak)
			}
			for _, want := range []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519} {
				if !slices.Contains(k.KexAlgos, want) {
					t.Errorf("%s not offered: %v", want, k.KexAlgos)
				}
			}
			if len(k.ServerHostKeyAlgos) == 0 {
				t.Fatal("no host key algorithm offered")
			}
			// And a Warden client set up by ca.ClientConfig completes the
			// handshake with it.
			ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
			ca.ClientConfig(ccfg)
			if tc.name == "rsa certificate" {
				ccfg.HostKeyAlgorithms = ca.HostCertAlgorithms
			}
			c, err := ssh.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c.Close()
		})
	}
}

// TestClientConfigOffersModernAlgorithmsOnly reads what a client set up by
// ca.ClientConfig offers.
func TestClientConfigOffersModernAlgorithmsOnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *sshtest.KexInit, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("SSH-2.0-sshtest\r\n"))
		k, err := sshtest.ReadKexInit(c)
		if err != nil {
			t.Error(err)
		}
		got <- k
	}()
	ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	ca.ClientConfig(ccfg)
	go func() { _, _ = ssh.Dial("tcp", ln.Addr().String(), ccfg) }()
	k := <-got
	if k == nil {
		t.Fatal("no KEXINIT")
	}
	if weak := sshtest.Weak(k, false); len(weak) > 0 {
		t.Fatalf("weak algorithms offered: %v", weak)
	}
	for _, a := range k.ServerHostKeyAlgos {
		if !slices.Contains(ca.HostKeyAlgorithms, a) {
			t.Errorf("host key algorithm %s accepted", a)
		}
	}
}
