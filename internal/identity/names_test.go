package identity

import (
	"strings"
	"testing"
)

func TestValidateUsername(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		wantErr string // substring; "" means valid
	}{
		{"alice", ""},
		{"_svc", ""},
		{"bob.smith-2", ""},
		{"a", ""},
		{strings.Repeat("a", 64), ""},
		{"", "empty"},
		{strings.Repeat("a", 65), "at most 64"},
		{"Alice", "must start"},
		{"1alice", "must start"},
		{"-alice", "must start"},
		{".alice", "must start"},
		{"al ice", "a space at position 3"},
		{"alice@example.com", `'@'`},
		{"al:ice", `':'`},
		{"alIce", `'I'`},
		{"al\x00ice", "control character"},
		{"al/ice", `'/'`},
		{"älice", "must start"},
		{"alicé", "non-ASCII"},
	}
	for _, tt := range tests {
		err := ValidateUsername(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateUsername(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateUsername(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidateLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		login string
		ok    bool
	}{
		{"root", true},
		{"ubuntu", true},
		{"ec2-user", true},
		{"Administrator", true},
		{"first.last", true},
		{"_apt", true},
		{"u1000", true},
		{"host$", true},
		{"9p", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{"-", false},
		{"-oProxyCommand=x", false},
		{".hidden", false},
		{"a b", false},
		{"a@b", false},
		{"a:b", false},
		{"a/b", false},
		{"a,b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"$", false},
		{"a$b", false},
		{"1000", false},
		{"0", false},
		{"*", false},
		{"{{internal.logins}}", false},
		{strings.Repeat("x", 65), false},
		{"jürgen", false},
	}
	for _, tt := range tests {
		err := ValidateLogin(tt.login)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateLogin(%q) = %v, want ok=%t", tt.login, err, tt.ok)
		}
	}
}
