package ca

import (
	"errors"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// Every SSH server Warden runs (the proxy's jump host and node tunnels, and
// the node) and every SSH client it runs (warden ssh, the node's tunnel to
// the proxy) negotiates from the lists below, set by ServerConfig and
// ClientConfig: modern algorithms only, nothing ssh-audit fails or warns
// about. OpenSSH clients from 6.5 on (8.x and 9.x in practice) share
// curve25519 key exchange, AES-GCM or chacha20-poly1305, and Ed25519 or
// RSA-SHA2 signatures with them.

// KeyExchanges: the post-quantum hybrid ML-KEM-768 + X25519 first (OpenSSH
// 9.9 and later), then X25519 (curve25519-sha256, which x/crypto also
// offers under its older name curve25519-sha256@libssh.org). No NIST-curve
// ECDH, no finite-field Diffie-Hellman, nothing with SHA-1.
var KeyExchanges = []string{
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeCurve25519,
}

// MACs are encrypt-then-MAC SHA-2 only. The ciphers are all AEAD, which
// need no MAC; the list must still name one.
var MACs = []string{
	ssh.HMACSHA256ETM,
	ssh.HMACSHA512ETM,
}

// ClientKeyAlgorithms are the public key signature algorithms Warden's SSH
// servers (node and proxy) accept from clients: no ssh-rsa (SHA-1), no DSA.
// Certificates are accepted through their underlying algorithm.
var ClientKeyAlgorithms = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoSKED25519,
	ssh.KeyAlgoECDSA256,
	ssh.KeyAlgoECDSA384,
	ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA256,
	ssh.KeyAlgoRSASHA512,
}

// HostCertAlgorithms are the host certificate algorithms Warden's clients
// accept: Ed25519 (every Warden host key) and RSA with SHA-2; no ssh-rsa
// (SHA-1), no DSA, no NIST curves.
var HostCertAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// HostKeyAlgorithms are HostCertAlgorithms then the same for plain keys:
// a server with a host certificate presents it, and one without fails with
// a clear message (the host key callback refuses plain keys) rather than
// "no common algorithm".
var HostKeyAlgorithms = append(slices.Clone(HostCertAlgorithms),
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
)

// rsaSHA2 are the signature algorithms an RSA host key may use.
var rsaSHA2 = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}

// Ciphers is the cipher list: AEAD only. On CPUs with AES and carry-less
// multiplication in hardware it is AES-GCM only: Go has no assembly for
// chacha20-poly1305, which would cost about half the CPU of a bulk
// transfer, and OpenSSH clients rank chacha20 first, so offering it would
// select it. Elsewhere chacha20-poly1305 comes first.
func Ciphers() []string {
	if cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM}
}

// setAlgorithms sets the negotiated algorithms shared by clients and
// servers.
func setAlgorithms(c *ssh.Config) {
	c.KeyExchanges = KeyExchanges
	c.Ciphers = Ciphers()
	c.MACs = MACs
}

// ServerConfig sets cfg's algorithms to Warden's and adds its host keys.
// Use it, not cfg.AddHostKey, for every SSH server: an RSA host key then
// signs with SHA-2 only.
func ServerConfig(cfg *ssh.ServerConfig, hostKeys ...ssh.Signer) error {
	setAlgorithms(&cfg.Config)
	cfg.PublicKeyAuthAlgorithms = ClientKeyAlgorithms
	for _, k := range hostKeys {
		k, err := hostKey(k)
		if err != nil {
			return err
		}
		cfg.AddHostKey(k)
	}
	return nil
}

// ClientConfig sets cfg's algorithms to Warden's. HostKeyAlgorithms is
// left to the caller when set (a tunnel accepts certificates only).
func ClientConfig(cfg *ssh.ClientConfig) {
	setAlgorithms(&cfg.Config)
	if len(cfg.HostKeyAlgorithms) == 0 {
		cfg.HostKeyAlgorithms = HostKeyAlgorithms
	}
}

// hostKey restricts an RSA host key (or certificate) to SHA-2 signatures;
// other keys have one algorithm each and are returned as they are.
func hostKey(k ssh.Signer) (ssh.Signer, error) {
	switch k.PublicKey().Type() {
	case ssh.KeyAlgoRSA, ssh.CertAlgoRSAv01:
	default:
		return k, nil
	}
	if m, ok := k.(ssh.MultiAlgorithmSigner); ok {
		// Already restricted: keep what it allows of SHA-2.
		allowed := []string{}
		for _, a := range rsaSHA2 {
			if slices.Contains(m.Algorithms(), a) {
				allowed = append(allowed, a)
			}
		}
		if len(allowed) == 0 {
			return nil, errRSASHA1Only
		}
		return ssh.NewSignerWithAlgorithms(m, allowed)
	}
	as, ok := k.(ssh.AlgorithmSigner)
	if !ok {
		// It can sign with ssh-rsa (SHA-1) only.
		return nil, errRSASHA1Only
	}
	return ssh.NewSignerWithAlgorithms(as, rsaSHA2)
}

var errRSASHA1Only = errors.New("ca: an RSA host key that cannot sign with SHA-2 is not accepted")
