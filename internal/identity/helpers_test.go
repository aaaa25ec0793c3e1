package identity

import "golang.org/x/crypto/argon2"

func argon2IDKeyForTest(pw string, p *argonParams) []byte {
	return argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, 32)
}
