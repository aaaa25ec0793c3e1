package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes (OWASP's 19 MiB / t=2 / p=1 profile).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Password length policy. MaxPasswordBytes bounds what is ever hashed so a
// huge submitted password cannot make a login expensive.
const (
	MinPasswordLen   = 12
	MaxPasswordLen   = 1024
	MaxPasswordBytes = 4 * MaxPasswordLen
)

// Bounds accepted when parsing a stored hash. A corrupt or hostile hash must
// not make CheckPassword allocate gigabytes or spin for minutes.
const (
	maxArgonMemoryKiB = 256 * 1024
	maxArgonTime      = 16
	maxArgonThreads   = 16
	minSaltLen        = 8
	maxSaltLen        = 64
	minKeyLen         = 16
	maxKeyLen         = 64
	maxEncodedLen     = 512
)

// ErrMalformedHash is wrapped by CheckPassword errors about the stored hash.
var ErrMalformedHash = errors.New("malformed password hash")

// hashSem bounds concurrent argon2 computations: each one takes ~19 MiB and
// a core for tens of milliseconds, so an unbounded burst of logins would
// exhaust memory long before it finished.
var hashSem = make(chan struct{}, max(1, runtime.NumCPU()))

func acquireHashSlot(ctx context.Context) (release func(), err error) {
	select {
	case hashSem <- struct{}{}:
		return func() { <-hashSem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for password hashing slot: %w", ctx.Err())
	}
}

// ValidatePassword checks a new password against the length policy: at
// least 12 and at most 1024 characters of valid UTF-8.
func ValidatePassword(pw string) error {
	if !utf8.ValidString(pw) {
		return errors.New("password is not valid UTF-8")
	}
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLen {
		return fmt.Errorf("password is too short: %d characters, at least %d are required", n, MinPasswordLen)
	}
	if n > MaxPasswordLen || len(pw) > MaxPasswordBytes {
		return fmt.Errorf("password is too long: at most %d characters are allowed", MaxPasswordLen)
	}
	return nil
}

// argonParams is a parsed PHC argon2id string.
type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func (p *argonParams) encode() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// HashPassword hashes pw with argon2id and a fresh random salt and returns
// the PHC string $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>. It waits for
// a hashing slot; ctx cancels the wait.
func HashPassword(ctx context.Context, pw string) (string, error) {
	if len(pw) > MaxPasswordBytes {
		return "", fmt.Errorf("hash password: longer than %d bytes", MaxPasswordBytes)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read salt: %w", err)
	}
	release, err := acquireHashSlot(ctx)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	defer release()
	p := argonParams{memory: argonMemoryKiB, time: argonTime, threads: argonThreads, salt: salt}
	p.key = argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, argonKeyLen)
	return p.encode(), nil
}

// DummyHash returns a well-formed hash with the current parameters that no
// password matches: its salt and key are random, not derived from any
// password. Checking a password against it costs what checking a real one
// does, for callers that must not reveal that an account does not exist.
func DummyHash() (string, error) {
	p := argonParams{memory: argonMemoryKiB, time: argonTime, threads: argonThreads,
		salt: make([]byte, argonSaltLen), key: make([]byte, argonKeyLen)}
	if _, err := rand.Read(p.salt); err != nil {
		return "", fmt.Errorf("dummy hash: %w", err)
	}
	if _, err := rand.Read(p.key); err != nil {
		return "", fmt.Errorf("dummy hash: %w", err)
	}
	return p.encode(), nil
}

// CheckPassword reports whether pw matches the PHC-encoded argon2id hash.
// A wrong password is (false, nil); an unparsable hash is an error wrapping
// ErrMalformedHash. The comparison is constant-time.
func CheckPassword(ctx context.Context, encoded, pw string) (bool, error) {
	p, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxPasswordBytes {
		// Never a valid password (HashPassword refuses it); don't pay to hash it.
		return false, nil
	}
	release, err := acquireHashSlot(ctx)
	if err != nil {
		return false, fmt.Errorf("check password: %w", err)
	}
	defer release()
	key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than
// the current ones, so a caller can rehash after a successful login.
func NeedsRehash(encoded string) bool {
	p, err := parseArgon2id(encoded)
	if err != nil {
		return true
	}
	return p.memory != argonMemoryKiB || p.time != argonTime || p.threads != argonThreads ||
		len(p.salt) != argonSaltLen || len(p.key) != argonKeyLen
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedHash, fmt.Sprintf(format, args...))
}

// parseArgon2id parses $argon2id$v=19$m=M,t=T,p=P$salt$key strictly: exact
// field order, decimal numbers without signs or leading zeros, unpadded
// standard base64, and every value within fixed bounds.
func parseArgon2id(encoded string) (*argonParams, error) {
	if len(encoded) > maxEncodedLen {
		return nil, malformed("longer than %d bytes", maxEncodedLen)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return nil, malformed("want 5 '$'-separated fields")
	}
	if parts[1] != "argon2id" {
		return nil, malformed("algorithm %q is not argon2id", parts[1])
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return nil, malformed("missing version")
	}
	ver, err := parseDecimal(v, argon2.Version)
	if err != nil || ver != argon2.Version {
		return nil, malformed("unsupported version %q", v)
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return nil, malformed("want parameters m=,t=,p=")
	}
	var p argonParams
	for i, name := range []string{"m", "t", "p"} {
		val, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return nil, malformed("parameter %d is not %s=", i+1, name)
		}
		var n uint64
		switch name {
		case "m":
			n, err = parseDecimal(val, maxArgonMemoryKiB)
			p.memory = uint32(n)
		case "t":
			n, err = parseDecimal(val, maxArgonTime)
			p.time = uint32(n)
		case "p":
			n, err = parseDecimal(val, maxArgonThreads)
			p.threads = uint8(n)
		}
		if err != nil {
			return nil, malformed("parameter %s: %v", name, err)
		}
		if n == 0 {
			return nil, malformed("parameter %s is zero", name)
		}
	}
	if p.memory < 8*uint32(p.threads) {
		return nil, malformed("memory %d KiB is below 8 KiB per thread", p.memory)
	}
	if p.salt, err = decodeB64(parts[4], minSaltLen, maxSaltLen); err != nil {
		return nil, malformed("salt: %v", err)
	}
	if p.key, err = decodeB64(parts[5], minKeyLen, maxKeyLen); err != nil {
		return nil, malformed("hash: %v", err)
	}
	return &p, nil
}

func parseDecimal(s string, limit uint64) (uint64, error) {
	if s == "" || len(s) > 10 {
		return 0, errors.New("bad number")
	}
	if s[0] < '0' || s[0] > '9' || (s[0] == '0' && len(s) > 1) {
		return 0, errors.New("bad number")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("bad number")
	}
	if n > limit {
		return 0, fmt.Errorf("%d is above the limit %d", n, limit)
	}
	return n, nil
}

func decodeB64(s string, minLen, maxLen int) ([]byte, error) {
	// The decoder skips '\r' and '\n' even in strict mode; an encoded
	// hash must have exactly one spelling, so refuse them here.
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("bad base64")
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("bad base64")
	}
	if len(b) < minLen || len(b) > maxLen {
		return nil, fmt.Errorf("%d bytes, want %d to %d", len(b), minLen, maxLen)
	}
	return b, nil
}
