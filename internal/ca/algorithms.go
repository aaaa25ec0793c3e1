package ca

import (
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

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

// ServerCiphers is the cipher list for Warden's SSH servers. On CPUs with
// AES and carry-less multiplication in hardware it is AES-GCM only: Go has
// no assembly for chacha20-poly1305, which would cost about half the CPU of
// a bulk transfer, and OpenSSH clients rank chacha20 and the CTR modes
// first, so offering them would select them. Elsewhere it is nil (the
// library's defaults).
func ServerCiphers() []string {
	if cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return nil
}
