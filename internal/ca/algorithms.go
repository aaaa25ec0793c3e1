package ca

import "golang.org/x/crypto/ssh"

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
