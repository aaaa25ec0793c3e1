package storage

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"/users/alice", true},
		{"/", true},
		{"/é/日本", true},
		{"/" + strings.Repeat("a", MaxKeyLen-1), true},
		{"", false},
		{"users/alice", false},
		{"/" + strings.Repeat("a", MaxKeyLen), false},
		{"/bad\xff", false},
		{"/nul\x00", false},
	}
	for _, tc := range tests {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%.40q) = %v, want ok %v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateKey(%.40q) error %v does not wrap ErrInvalid", tc.key, err)
		}
	}
}

func TestValidateItemValueSize(t *testing.T) {
	if err := ValidateItem(Item{Key: "/k", Value: make([]byte, MaxValueSize)}); err != nil {
		t.Errorf("max value rejected: %v", err)
	}
	if err := ValidateItem(Item{Key: "/k", Value: make([]byte, MaxValueSize+1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized value: err = %v, want ErrInvalid", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		prefix, end string
		ok          bool
	}{
		{"/a/", "/a0", true},
		{"/a", "/b", true},
		{"/a\xff", "/b", true},
		{"\xff\xff", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		end, ok := PrefixEnd(tc.prefix)
		if end != tc.end || ok != tc.ok {
			t.Errorf("PrefixEnd(%q) = %q, %v; want %q, %v", tc.prefix, end, ok, tc.end, tc.ok)
		}
	}
}

// FuzzPrefixEnd checks that the range [prefix, PrefixEnd(prefix)) holds
// exactly the strings with that prefix, which List's range scan relies on.
func FuzzPrefixEnd(f *testing.F) {
	f.Add("/a/", "/a/b")
	f.Add("/a", "/a0")
	f.Add("", "/x")
	f.Add("/\xff", "/\xff\xff")
	f.Add("/é", "/é/")
	f.Fuzz(func(t *testing.T, prefix, key string) {
		end, ok := PrefixEnd(prefix)
		inRange := key >= prefix && (!ok || key < end)
		if inRange != strings.HasPrefix(key, prefix) {
			t.Fatalf("prefix %q end %q (%v): key %q in range = %v", prefix, end, ok, key, inRange)
		}
	})
}

func TestKey(t *testing.T) {
	if got := Key("users", "alice"); got != "/users/alice" {
		t.Errorf("Key = %q", got)
	}
	if got := Key(); got != "" {
		t.Errorf("Key() = %q", got)
	}
}
