package ca

import (
	"bytes"
	//lint:ignore SA1019 to prove DSA keys are refused
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func userChecker(a *Authority, now time.Time) *ssh.CertChecker {
	ca := a.UserCAPublicKey().Marshal()
	return &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca) },
		Clock:           func() time.Time { return now },
	}
}

func TestIssueUserVerify(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	other := otherAuthority(t)
	req := baseUserRequest(t)
	cert, err := a.IssueUser(req)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire format and back, as a client would present it.
	parsed, err := ssh.ParsePublicKey(cert.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	cert = parsed.(*ssh.Certificate)

	tests := []struct {
		name    string
		checker *ssh.CertChecker
		login   string
		wantErr string
	}{
		{"accepted", userChecker(a, testNow), "alice", ""},
		{"second principal", userChecker(a, testNow), "ubuntu", ""},
		{"just issued, peer clock 30s behind", userChecker(a, testNow.Add(-30*time.Second)), "alice", ""},
		{"other CA", userChecker(other, testNow), "alice", "unrecognized authority"},
		{"host CA is not a user CA", &ssh.CertChecker{
			IsUserAuthority: func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), a.HostCAPublicKey().Marshal()) },
			Clock:           func() time.Time { return testNow },
		}, "alice", "unrecognized authority"},
		{"principal not in cert", userChecker(a, testNow), "root", "not in the set of valid principals"},
		{"just before expiry", userChecker(a, testNow.Add(req.TTL-time.Second)), "alice", ""},
		{"expired", userChecker(a, testNow.Add(req.TTL)), "alice", "expired"},
		{"before valid", userChecker(a, testNow.Add(-2*time.Minute)), "alice", "not yet valid"},
	}
	for _, tt := range tests {
		perms, err := tt.checker.Authenticate(connMeta{tt.login}, cert)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: Authenticate = %v", tt.name, err)
			} else if _, ok := perms.Extensions[ExtRoles]; !ok {
				t.Errorf("%s: permissions lack roles", tt.name)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Authenticate = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}

	// The certificate fields.
	if cert.KeyId != "alice" || cert.CertType != ssh.UserCert {
		t.Errorf("KeyId %q type %d", cert.KeyId, cert.CertType)
	}
	if got, want := cert.ValidAfter, uint64(testNow.Add(-time.Minute).Unix()); got != want {
		t.Errorf("ValidAfter %d, want %d", got, want)
	}
	if got, want := cert.ValidBefore, uint64(testNow.Add(req.TTL).Unix()); got != want {
		t.Errorf("ValidBefore %d, want %d", got, want)
	}
	wantExt := map[string]string{
		ExtPermitPTY: "",
		ExtRoles:     `["access","dev"]`,
		ExtTraits:    `{"groups":["eng"],"logins":["alice","ubuntu"]}`,
		ExtRequests:  `["0b7c3a2e-5f7e-4d8e-9d2a-1f0c7f8e6a11"]`,
		ExtIssued:    `"2026-11-22T12:00:00Z"`,
	}
	if diff := cmp.Diff(wantExt, cert.Extensions); diff != "" {
		t.Errorf("extensions (-want +got):\n%s", diff)
	}
	if len(cert.CriticalOptions) != 0 {
		t.Errorf("critical options %v", cert.CriticalOptions)
	}
	if !bytes.Equal(cert.Key.Marshal(), req.PublicKey.Marshal()) {
		t.Error("certificate is for another key")
	}
}

func TestIssueUserExtensions(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	tests := []struct {
		name     string
		mod      func(r *UserCertRequest)
		wantExt  []string
		wantCrit map[string]string
	}{
		{"nothing permitted", func(r *UserCertRequest) { r.PermitPTY = false; r.RequestIDs = nil; r.Traits = nil },
			[]string{ExtRoles, ExtIssued}, nil},
		{"all permitted", func(r *UserCertRequest) {
			r.PermitPortForwarding, r.PermitAgentForwarding = true, true
		}, []string{ExtPermitPTY, ExtPermitPortForwarding, ExtPermitAgentForwarding, ExtRoles, ExtTraits, ExtRequests, ExtIssued}, nil},
		{"issue time and MFA device", func(r *UserCertRequest) {
			r.Issued, r.MFADevice = testNow.Add(-time.Second), "totp-0a1b2c"
		}, []string{ExtPermitPTY, ExtRoles, ExtTraits, ExtRequests, ExtIssued, ExtMFADevice}, nil},
		{"source address", func(r *UserCertRequest) { r.SourceAddress = "10.1.2.3/8, 192.0.2.7,2001:db8::/32" },
			[]string{ExtPermitPTY, ExtRoles, ExtTraits, ExtRequests, ExtIssued},
			map[string]string{OptSourceAddress: "10.0.0.0/8,192.0.2.7,2001:db8::/32"}},
	}
	for _, tt := range tests {
		req := baseUserRequest(t)
		tt.mod(&req)
		cert, err := a.IssueUser(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for k := range cert.Extensions {
			got = append(got, k)
		}
		if diff := cmp.Diff(tt.wantExt, got, sortStrings); diff != "" {
			t.Errorf("%s: extensions (-want +got):\n%s", tt.name, diff)
		}
		if _, ok := cert.Extensions["permit-X11-forwarding"]; ok {
			t.Errorf("%s: X11 forwarding permitted", tt.name)
		}
		if diff := cmp.Diff(tt.wantCrit, cert.CriticalOptions); diff != "" {
			t.Errorf("%s: critical options (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestIssueUserSourceAddressEnforced(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	req := baseUserRequest(t)
	req.SourceAddress = "192.0.2.0/24"
	cert, err := a.IssueUser(req)
	if err != nil {
		t.Fatal(err)
	}
	// CertChecker accepts it (the SSH server enforces source-address
	// against the connection's address); the option must be present.
	if _, err := userChecker(a, testNow).Authenticate(connMeta{"alice"}, cert); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if cert.CriticalOptions[OptSourceAddress] != "192.0.2.0/24" {
		t.Errorf("source-address %q", cert.CriticalOptions[OptSourceAddress])
	}
}

func TestIssueUserRejects(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024SSH, _ := ssh.NewPublicKey(&rsa1024.PublicKey)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048SSH, _ := ssh.NewPublicKey(&rsa2048.PublicKey)
	var dsaKey dsa.PrivateKey
	if err := dsa.GenerateParameters(&dsaKey.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dsaKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	dsaSSH, err := ssh.NewPublicKey(&dsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecSSH, _ := ssh.NewPublicKey(&ec.PublicKey)
	certAsKey, err := a.IssueUser(baseUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		mod  func(r *UserCertRequest)
		want string // "" = accepted
	}{
		{"ok", func(r *UserCertRequest) {}, ""},
		{"rsa 2048", func(r *UserCertRequest) { r.PublicKey = rsa2048SSH }, ""},
		{"ecdsa p384", func(r *UserCertRequest) { r.PublicKey = ecSSH }, ""},
		{"no roles", func(r *UserCertRequest) { r.Roles = nil }, ""},
		{"internal principal only", func(r *UserCertRequest) { r.Principals = []string{InternalPrincipalPrefix + "alice"} }, ""},
		{"internal principal, bad user", func(r *UserCertRequest) { r.Principals = []string{InternalPrincipalPrefix + "Alice"} }, "internal principal"},
		{"internal principal, no user", func(r *UserCertRequest) { r.Principals = []string{InternalPrincipalPrefix} }, "internal principal"},
		{"internal principal, other user", func(r *UserCertRequest) { r.Principals = []string{InternalPrincipalPrefix + "bob"} }, "does not match"},
		{"other dash principal", func(r *UserCertRequest) { r.Principals = []string{"-warden-host-x"} }, "principal"},
		{"rsa 1024", func(r *UserCertRequest) { r.PublicKey = rsa1024SSH }, "1024 bits refused"},
		{"dsa", func(r *UserCertRequest) { r.PublicKey = dsaSSH }, "DSA"},
		{"cert as key", func(r *UserCertRequest) { r.PublicKey = certAsKey }, "not accepted"},
		{"nil key", func(r *UserCertRequest) { r.PublicKey = nil }, "missing public key"},
		{"bad username", func(r *UserCertRequest) { r.Username = "Alice" }, "username"},
		{"empty username", func(r *UserCertRequest) { r.Username = "" }, "username"},
		{"no principals", func(r *UserCertRequest) { r.Principals = nil }, "no principals"},
		{"empty principal", func(r *UserCertRequest) { r.Principals = []string{""} }, "login is empty"},
		{"issued in the future", func(r *UserCertRequest) { r.Issued = testNow.Add(2 * time.Minute) }, "in the future"},
		{"bad MFA device", func(r *UserCertRequest) { r.MFADevice = "a/b" }, "MFA device"},
		{"principal with comma", func(r *UserCertRequest) { r.Principals = []string{"a,b"} }, "principal"},
		{"principal with space", func(r *UserCertRequest) { r.Principals = []string{"a b"} }, "principal"},
		{"too many principals", func(r *UserCertRequest) { r.Principals = manyStrings("p", MaxPrincipals+1) }, "principals"},
		{"bad role", func(r *UserCertRequest) { r.Roles = []string{"dev ops"} }, "role name"},
		{"too many roles", func(r *UserCertRequest) { r.Roles = manyStrings("r", MaxRoles+1) }, "roles"},
		{"bad trait key", func(r *UserCertRequest) { r.Traits = map[string][]string{"a b": {"x"}} }, "trait name"},
		{"control char in trait", func(r *UserCertRequest) { r.Traits = map[string][]string{"k": {"a\nb"}} }, "control"},
		{"huge trait value", func(r *UserCertRequest) {
			r.Traits = map[string][]string{"k": {strings.Repeat("x", MaxTraitValueLen+1)}}
		}, "bytes"},
		{"traits over 64KiB", func(r *UserCertRequest) {
			r.Traits = map[string][]string{}
			for i := range 40 {
				r.Traits[manyStrings("k", 40)[i]] = []string{strings.Repeat("x", 1000), strings.Repeat("y", 1000)}
			}
		}, "at most 65536"},
		{"bad request ID", func(r *UserCertRequest) { r.RequestIDs = []string{"../x"} }, "request ID"},
		{"zero TTL", func(r *UserCertRequest) { r.TTL = 0 }, "not positive"},
		{"negative TTL", func(r *UserCertRequest) { r.TTL = -time.Hour }, "not positive"},
		{"huge TTL", func(r *UserCertRequest) { r.TTL = 10 * 365 * 24 * time.Hour }, "maximum"},
		{"bad source address", func(r *UserCertRequest) { r.SourceAddress = "example.com" }, "source address"},
		{"empty source entry", func(r *UserCertRequest) { r.SourceAddress = "10.0.0.1," }, "source address"},
	}
	for _, tt := range tests {
		req := baseUserRequest(t)
		tt.mod(&req)
		_, err := a.IssueUser(req)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: IssueUser = %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: IssueUser = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestIssueHost(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	req := HostCertRequest{
		PublicKey:  newSSHKey(t),
		HostID:     "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a",
		Principals: []string{"5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a", "web-1", "web-1.example.com", "10.0.0.5"},
		TTL:        24 * time.Hour,
	}
	cert, err := a.IssueHost(req)
	if err != nil {
		t.Fatal(err)
	}
	if cert.CertType != ssh.HostCert || cert.KeyId != req.HostID {
		t.Errorf("type %d KeyId %q", cert.CertType, cert.KeyId)
	}
	if len(cert.Extensions) != 0 || len(cert.CriticalOptions) != 0 {
		t.Errorf("host cert has extensions %v options %v", cert.Extensions, cert.CriticalOptions)
	}
	hostCA := a.HostCAPublicKey().Marshal()
	checker := &ssh.CertChecker{
		IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return bytes.Equal(k.Marshal(), hostCA) },
		Clock:           func() time.Time { return testNow },
	}
	if err := checker.CheckHostKey("web-1.example.com:22", nil, cert); err != nil {
		t.Errorf("CheckHostKey: %v", err)
	}
	if err := checker.CheckHostKey("db-1:22", nil, cert); err == nil {
		t.Error("host cert accepted for a name it does not carry")
	}
	// A host certificate is never a user certificate, even to a checker
	// that (wrongly) trusts the host CA for users.
	uc := &ssh.CertChecker{
		IsUserAuthority: func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), hostCA) },
		Clock:           func() time.Time { return testNow },
	}
	if _, err := uc.Authenticate(connMeta{"web-1"}, cert); err == nil {
		t.Error("host cert accepted as a user cert")
	}
	if _, err := IdentityFromSSHCert(cert); err == nil {
		t.Error("IdentityFromSSHCert decoded a host cert")
	}
	// A user certificate is not a host certificate.
	ucert, err := a.IssueUser(baseUserRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := checker.CheckHostKey("alice:22", nil, ucert); err == nil {
		t.Error("user cert accepted as a host cert")
	}

	bad := []struct {
		name string
		mod  func(r *HostCertRequest)
	}{
		{"no host ID", func(r *HostCertRequest) { r.HostID = "" }},
		{"bad host ID", func(r *HostCertRequest) { r.HostID = "a/b" }},
		{"no principals", func(r *HostCertRequest) { r.Principals = nil }},
		{"bad principal", func(r *HostCertRequest) { r.Principals = []string{"web 1"} }},
		{"no key", func(r *HostCertRequest) { r.PublicKey = nil }},
		{"no TTL", func(r *HostCertRequest) { r.TTL = 0 }},
	}
	for _, tt := range bad {
		r := req
		tt.mod(&r)
		if _, err := a.IssueHost(r); err == nil {
			t.Errorf("%s: IssueHost succeeded", tt.name)
		}
	}
}

func TestIdentityFromSSHCertRoundtrip(t *testing.T) {
	t.Parallel()
	a := testAuthority(t)
	tests := []struct {
		name string
		mod  func(r *UserCertRequest)
	}{
		{"full", func(r *UserCertRequest) {}},
		{"minimal", func(r *UserCertRequest) { r.Roles, r.Traits, r.RequestIDs = nil, nil, nil }},
		{"internal principal", func(r *UserCertRequest) { r.Principals = []string{InternalPrincipalPrefix + "alice", "ubuntu"} }},
		{"unicode trait", func(r *UserCertRequest) { r.Traits = map[string][]string{"display": {"Zoë \"Z\" <z@example.com>"}} }},
		{"empty trait list", func(r *UserCertRequest) { r.Traits = map[string][]string{"k": nil, "j": {}} }},
		{"issue time and MFA device", func(r *UserCertRequest) { r.Issued, r.MFADevice = testNow.Add(-1500*time.Millisecond), "totp-0a1b2c" }},
	}
	for _, tt := range tests {
		req := baseUserRequest(t)
		tt.mod(&req)
		cert, err := a.IssueUser(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		id, err := IdentityFromSSHCert(cert)
		if err != nil {
			t.Fatalf("%s: IdentityFromSSHCert: %v", tt.name, err)
		}
		want := &CertIdentity{
			Username:   req.Username,
			Roles:      req.Roles,
			Traits:     req.Traits,
			RequestIDs: req.RequestIDs,
			Principals: req.Principals,
			Expires:    testNow.Add(req.TTL),
			Issued:     testNow,
			MFADevice:  req.MFADevice,
		}
		if !req.Issued.IsZero() {
			want.Issued = req.Issued
		}
		if diff := cmp.Diff(want, id, equateEmpty); diff != "" {
			t.Errorf("%s: identity (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestIdentityFromSSHCertRejects(t *testing.T) {
	t.Parallel()
	good := func() *ssh.Certificate {
		return &ssh.Certificate{
			CertType:        ssh.UserCert,
			KeyId:           "alice",
			ValidPrincipals: []string{"alice"},
			ValidBefore:     uint64(testNow.Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{
				ExtRoles: `["dev"]`, ExtTraits: `{"logins":["alice"]}`, ExtRequests: `["r1"]`,
			}},
		}
	}
	if _, err := IdentityFromSSHCert(good()); err != nil {
		t.Fatalf("good cert: %v", err)
	}
	tests := []struct {
		name string
		mod  func(c *ssh.Certificate)
		want string
	}{
		{"host type", func(c *ssh.Certificate) { c.CertType = ssh.HostCert }, "not a user certificate"},
		{"bad key ID", func(c *ssh.Certificate) { c.KeyId = "../etc" }, "key ID"},
		{"no principals", func(c *ssh.Certificate) { c.ValidPrincipals = nil }, "no principals"},
		{"bad principal", func(c *ssh.Certificate) { c.ValidPrincipals = []string{"-oProxyCommand"} }, "principal"},
		{"internal principal of other user", func(c *ssh.Certificate) { c.ValidPrincipals = []string{InternalPrincipalPrefix + "bob"} }, "does not match"},
		{"infinite", func(c *ssh.Certificate) { c.ValidBefore = ssh.CertTimeInfinity }, "never expires"},
		{"no roles ext", func(c *ssh.Certificate) { delete(c.Extensions, ExtRoles) }, "missing"},
		{"roles null", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `null` }, "array"},
		{"roles object", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `{"a":1}` }, "array"},
		{"roles number", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `[1]` }, "not a string"},
		{"roles nested", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `[["a"]]` }, "not a string"},
		{"roles trailing", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `["a"]x` }, "trailing"},
		{"roles second value", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `["a"] ["b"]` }, "trailing"},
		{"roles unterminated", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `["a"` }, "bad JSON"},
		{"role name", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `["a b"]` }, "role name"},
		{"too many roles", func(c *ssh.Certificate) {
			c.Extensions[ExtRoles] = `[` + strings.Repeat(`"r",`, MaxRoles) + `"r"]`
		}, "more than 256"},
		{"huge roles", func(c *ssh.Certificate) { c.Extensions[ExtRoles] = `["` + strings.Repeat("a", MaxExtensionLen) + `"]` }, "at most 65536"},
		{"traits array", func(c *ssh.Certificate) { c.Extensions[ExtTraits] = `["a"]` }, "bad JSON"},
		{"traits value string", func(c *ssh.Certificate) { c.Extensions[ExtTraits] = `{"a":"b"}` }, "array"},
		{"traits duplicate", func(c *ssh.Certificate) { c.Extensions[ExtTraits] = `{"a":["x"],"a":["y"]}` }, "duplicate"},
		{"trait key", func(c *ssh.Certificate) { c.Extensions[ExtTraits] = `{"a b":["x"]}` }, "trait name"},
		{"trait control", func(c *ssh.Certificate) { c.Extensions[ExtTraits] = `{"a":["x\u0000"]}` }, "control"},
		{"requests bad", func(c *ssh.Certificate) { c.Extensions[ExtRequests] = `["a/b"]` }, "request ID"},
		{"requests too many", func(c *ssh.Certificate) {
			c.Extensions[ExtRequests] = `[` + strings.Repeat(`"r",`, MaxRequestIDs) + `"r"]`
		}, "more than 64"},
	}
	for _, tt := range tests {
		c := good()
		tt.mod(c)
		_, err := IdentityFromSSHCert(c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: IdentityFromSSHCert = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := IdentityFromSSHCert(nil); err == nil {
		t.Error("nil cert decoded")
	}
}

// TestOpenSSHReadsUserCert has the real ssh-keygen parse an issued
// certificate, proving the encoding is what OpenSSH expects.
func TestOpenSSHReadsUserCert(t *testing.T) {
	t.Parallel()
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen (openssh-client) not installed")
	}
	a := testAuthority(t)
	req := baseUserRequest(t)
	req.SourceAddress = "192.0.2.0/24"
	cert, err := a.IssueUser(req)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id-cert.pub")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-L", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"ssh-ed25519-cert-v01@openssh.com user certificate",
		`Key ID: "alice"`,
		ssh.FingerprintSHA256(a.UserCAPublicKey()),
		"permit-pty", ExtRoles, ExtTraits, ExtRequests,
		"source-address 192.0.2.0/24",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ssh-keygen output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "permit-X11-forwarding") || strings.Contains(s, "permit-user-rc") {
		t.Errorf("unexpected permissions:\n%s", s)
	}
}

func manyStrings(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + big.NewInt(int64(i)).String()
	}
	return out
}
