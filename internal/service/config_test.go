package service

import (
	"strings"
	"testing"
)

func TestSessionCgroupsSetting(t *testing.T) {
	for _, tc := range []struct {
		value, err string
	}{
		{"", ""},
		{"auto", ""},
		{"off", ""},
		{"sometimes", `node session_cgroups must be "auto" or "off", not "sometimes"`},
	} {
		c := &Config{DataDir: t.TempDir()}
		c.Node.SessionCgroups = tc.value
		err := c.CheckAndSetDefaults()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q refused: %v", tc.value, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %v, want %q", tc.value, err, tc.err)
		}
	}
}
