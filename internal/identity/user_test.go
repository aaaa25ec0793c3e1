package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestUserSecretsNotPrinted(t *testing.T) {
	t.Parallel()
	u := User{
		Name: "alice", Roles: []string{"dev"}, Status: StatusActive,
		PasswordHash: "$argon2id$SECRETHASH", TOTPSecret: "SECRETTOTP",
		CreatedAt: time.Unix(1, 0),
	}
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
	logger.Info("user", "user", u, "ptr", &u)
	logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	logger.Info("user", "user", u, "ptr", &u)
	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", u),
		"%+v": fmt.Sprintf("%+v", u),
		"%#v": fmt.Sprintf("%#v", u),
		//lint:ignore S1025 the %s verb is what is tested
		"%s":   fmt.Sprintf("%s", &u),
		"%+vp": fmt.Sprintf("%+v", &u),
		"slog": logBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, "SECRET") {
			t.Errorf("%s output leaks a secret: %s", name, out)
		}
		if !strings.Contains(out, "alice") {
			t.Errorf("%s output lacks the name: %s", name, out)
		}
	}
	if !strings.Contains(logBuf.String(), `"has_totp":true`) {
		t.Errorf("slog output lacks has_totp: %s", logBuf.String())
	}
}

func TestUserJSON(t *testing.T) {
	t.Parallel()
	u := User{
		Name: "alice", Roles: []string{"dev"}, Traits: map[string][]string{"logins": {"alice"}},
		PasswordHash: "h", TOTPSecret: "s", TOTPLastStep: 42, Status: StatusPending,
		CreatedAt: time.Unix(1, 0).UTC(), UpdatedAt: time.Unix(2, 0).UTC(),
	}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"name", "roles", "traits", "password_hash", "totp_secret", "totp_last_step", "status", "created_at", "updated_at"} {
		if !bytes.Contains(b, []byte(`"`+key+`":`)) {
			t.Errorf("JSON lacks %q: %s", key, b)
		}
	}
	var back User
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.String() != u.String() || back.PasswordHash != u.PasswordHash || back.TOTPSecret != u.TOTPSecret || back.TOTPLastStep != 42 {
		t.Errorf("roundtrip mismatch: %+v", back)
	}
	empty, _ := json.Marshal(User{Name: "x", Status: StatusActive})
	if string(empty) != `{"name":"x","status":"active"}` {
		t.Errorf("zero fields not omitted: %s", empty)
	}
}

func TestUserValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		u  User
		ok bool
	}{
		{User{Name: "alice", Status: StatusActive}, true},
		{User{Name: "alice", Status: StatusPending, Roles: []string{"dev"}}, true},
		{User{Name: "Alice", Status: StatusActive}, false},
		{User{Name: "alice", Status: "disabled"}, false},
		{User{Name: "alice", Status: ""}, false},
		{User{Name: "alice", Status: StatusActive, Roles: []string{""}}, false},
	}
	for i, tt := range tests {
		if err := tt.u.Validate(); (err == nil) != tt.ok {
			t.Errorf("case %d: Validate = %v, want ok=%t", i, err, tt.ok)
		}
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if len(a) != 64 || a == b {
		t.Fatalf("tokens %q %q", a, b)
	}
	h := HashToken(a)
	if len(h) != 64 || h == a || h != HashToken(a) {
		t.Fatalf("hash %q", h)
	}
	// SHA-256("abc")
	if got := HashToken("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashToken(abc) = %s", got)
	}
	if !TokenMatches(h, a) || TokenMatches(h, b) || TokenMatches("", a) {
		t.Error("TokenMatches wrong")
	}
}

func TestCertCurrent(t *testing.T) {
	created := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	u := User{Name: "zed", CreatedAt: created}
	for _, tc := range []struct {
		name   string
		after  time.Time
		issued time.Time
		want   bool
	}{
		{"issued after creation", time.Time{}, created.Add(time.Nanosecond), true},
		{"issued before the user existed", time.Time{}, created.Add(-time.Hour), false},
		{"issued at creation", time.Time{}, created, false},
		{"issued before a reset", created.Add(time.Hour), created.Add(time.Minute), false},
		{"issued after a reset", created.Add(time.Hour), created.Add(time.Hour + time.Nanosecond), true},
	} {
		u.CertsIssuedAfter = tc.after
		if got := u.CertCurrent(tc.issued); got != tc.want {
			t.Errorf("%s: CertCurrent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewMFADeviceID(t *testing.T) {
	a, err := NewMFADeviceID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewMFADeviceID()
	if a == b || !strings.HasPrefix(a, "totp-") || len(a) != len("totp-")+16 {
		t.Fatalf("device ids %q %q", a, b)
	}
}
