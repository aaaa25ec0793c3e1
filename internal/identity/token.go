package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
)

// TokenBytes is the entropy of a token from NewToken.
const TokenBytes = 32

// NewToken returns a random token (32 bytes, hex-encoded) for invites, join
// tokens and sessions. Store only HashToken(tok).
func NewToken() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// HashToken returns the hex SHA-256 of tok, the form tokens are stored in.
// Tokens carry 256 bits of entropy, so a fast hash is enough.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// TokenMatches reports in constant time whether tok hashes to hash.
func TokenMatches(hash, tok string) bool {
	got := HashToken(tok)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}

// NewMFADeviceID returns a new id for an MFA device ("totp-" and 16 hex
// digits): it names the device in certificates, audit events and locks.
func NewMFADeviceID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new MFA device id: %w", err)
	}
	return "totp-" + hex.EncodeToString(b), nil
}
