package identity

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMigrateDevices(t *testing.T) {
	// A record written before devices were a list.
	var u User
	if err := json.Unmarshal([]byte(`{"name":"dev","status":"active","password_hash":"h","totp_secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP","totp_last_step":7,"mfa_device":"totp-0011223344556677"}`), &u); err != nil {
		t.Fatal(err)
	}
	if !u.HasMFA() || !u.MigrateDevices() {
		t.Fatal("nothing migrated")
	}
	if len(u.Devices) != 1 || u.Devices[0].ID != "totp-0011223344556677" || u.Devices[0].Name != "otp" || u.Devices[0].TOTPLastStep != 7 || u.TOTPSecret != "" {
		t.Fatalf("migrated %+v", u)
	}
	if u.MigrateDevices() {
		t.Fatal("migrated twice")
	}
	// The replay guard came along: the step it had is still spent.
	code, err := TOTPCode(u.Devices[0].TOTPSecret, time.Unix(7*30, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.VerifyTOTPDevices(code, time.Unix(7*30, 0)); err != ErrTOTPReplayed {
		t.Fatalf("a spent step after migration: %v", err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, rc, err := NewRecoveryCodes(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != RecoveryCodeCount || rc.Left() != RecoveryCodeCount {
		t.Fatalf("%d codes, %d left", len(codes), rc.Left())
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 23 || seen[c] || !LooksLikeRecoveryCode(c) {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if rc.Use("aaaaa-aaaaa-aaaaa-aaaaa") || rc.Use("123456") {
		t.Fatal("a code not in the set was accepted")
	}
	// Typed in capitals, without dashes: the same code, once.
	if !rc.Use(strings.ToUpper(strings.ReplaceAll(codes[2], "-", " "))) || rc.Use(codes[2]) || rc.Left() != RecoveryCodeCount-1 {
		t.Fatal("a code is not single use")
	}
	// Another set's code does not work here (a different key).
	other, _, _ := NewRecoveryCodes(time.Now())
	if rc.Use(other[0]) {
		t.Fatal("another set's code accepted")
	}
	var none *RecoveryCodes
	if none.Use(codes[0]) || none.Left() != 0 {
		t.Fatal("no set accepted a code")
	}
}

func TestValidateDeviceName(t *testing.T) {
	for _, ok := range []string{"otp", "laptop", "YubiKey 5C", "alice@phone", "a.b-c_d"} {
		if err := ValidateDeviceName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " x", "x ", strings.Repeat("a", 65), "a/b", "a\nb", "<script>", "é"} {
		if err := ValidateDeviceName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzRecoveryCode: any input, as typed at sign-in, is refused or is one
// of the set's codes, once; nothing panics.
func FuzzRecoveryCode(f *testing.F) {
	codes, _, err := NewRecoveryCodes(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(codes[0])
	f.Add(strings.ToUpper(codes[1]))
	f.Add("12345678901234567890")
	f.Add("-----")
	f.Fuzz(func(t *testing.T, in string) {
		_, rc, err := NewRecoveryCodes(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if rc.Use(in) {
			t.Fatalf("%q matched a fresh random set", in)
		}
		_ = ValidateDeviceName(in)
	})
}
