package auth

import (
	"crypto"

	"golang.org/x/crypto/ssh"
)

// cryptoPublicKey is safe on keys from parsePublicKey, which checks the type.
func cryptoPublicKey(pub ssh.PublicKey) crypto.PublicKey {
	return pub.(ssh.CryptoPublicKey).CryptoPublicKey()
}
