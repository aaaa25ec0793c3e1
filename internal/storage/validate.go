package storage

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits every driver enforces, so that data written through one driver can
// always be read back and migrated through another.
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 1024
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 16 << 20
)

// ErrInvalid is wrapped by every error about a malformed key or value.
var ErrInvalid = errors.New("invalid storage argument")

// ValidateKey reports whether key is acceptable: non-empty valid UTF-8,
// starting with "/", at most MaxKeyLen bytes and free of NUL bytes.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case key[0] != '/':
		return fmt.Errorf("%w: key %.64q must start with \"/\"", ErrInvalid, key)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key %.64q... is %d bytes, longer than %d", ErrInvalid, key, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key %.64q is not valid UTF-8", ErrInvalid, key)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key %.64q contains a NUL byte", ErrInvalid, key)
	}
	return nil
}

// ValidateItem checks the key and the value size of it.
func ValidateItem(it Item) error {
	if err := ValidateKey(it.Key); err != nil {
		return err
	}
	if len(it.Value) > MaxValueSize {
		return fmt.Errorf("%w: value for %q is %d bytes, larger than %d", ErrInvalid, it.Key, len(it.Value), MaxValueSize)
	}
	return nil
}

// PrefixEnd returns the smallest string greater than every string that has
// prefix as a prefix, so that a prefix scan is the half-open range
// [prefix, PrefixEnd(prefix)) in byte order. ok is false when there is no
// such bound (prefix is empty or all 0xff bytes): the range is unbounded.
func PrefixEnd(prefix string) (end string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// HasAnyPrefix reports whether key starts with one of prefixes (a
// watcher's test for the changes it delivers).
func HasAnyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
