package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/crypto/bcrypt"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/wire"
)

// testIdP is crewjam/saml's samlidp, a real SAML IdP (signed responses
// and assertions), with a hook that changes each assertion before the IdP
// signs it.
type testIdP struct {
	srv  *httptest.Server
	idp  *samlidp.Server
	key  *rsa.PrivateKey
	cert *x509.Certificate
	mu   sync.Mutex
	edit func(*saml.Assertion)
	// metadataDown makes /metadata answer 503.
	metadataDown atomic.Bool
}

type editingMaker struct{ t *testIdP }

func (m editingMaker) MakeAssertion(req *saml.IdpAuthnRequest, s *saml.Session) error {
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(req, s); err != nil {
		return err
	}
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	if m.t.edit != nil {
		m.t.edit(req.Assertion)
	}
	return nil
}

func (t *testIdP) setEdit(f func(*saml.Assertion)) {
	t.mu.Lock()
	t.edit = f
	t.mu.Unlock()
}

// startTestIdP starts an IdP with users alice (ops-team), alice-evil
// (ops-team) and bob (sales); every password is "pw".
func startTestIdP(t testing.TB) *testIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)},
		&x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test idp"}}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ti := &testIdP{key: key, cert: cert}
	var h http.Handler
	ti.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metadata" && ti.metadataDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ti.srv.Close)
	u, _ := url.Parse(ti.srv.URL)
	ti.idp, err = samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}})
	if err != nil {
		t.Fatal(err)
	}
	ti.idp.IDP.AssertionMaker = editingMaker{ti}
	h = ti.idp
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, u := range []samlidp.User{
		{Name: "alice", Groups: []string{"staff", "ops-team"}, Email: "alice@example.com", Surname: "ops"},
		{Name: "alice-evil", Groups: []string{"ops-team"}, Email: "mallory@example.com"},
		{Name: "bob", Groups: []string{"sales"}, Email: "bob@example.com"},
	} {
		u.HashedPassword = hash
		if err := ti.idp.Store.Put("/users/"+u.Name, u); err != nil {
			t.Fatal(err)
		}
	}
	return ti
}

// register gives the IdP Warden's SP metadata, as an admin would.
func (ti *testIdP) register(t testing.TB, name string, metadata []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, ti.srv.URL+"/services/"+name, bytes.NewReader(metadata))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("register the SP with the IdP: %d %s", resp.StatusCode, body)
	}
}

var (
	formField = func(name string) *regexp.Regexp {
		return regexp.MustCompile(`name="` + name + `" value="([^"]*)"`)
	}
	samlResponseField = formField("SAMLResponse")
	relayStateField   = formField("RelayState")
	formAction        = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

// SignIn plays the browser at the IdP: it signs in at the IdP (its
// session cookie), opens the sign-in URL, and returns the SAMLResponse
// and RelayState of the form the IdP has the browser post to the ACS, and
// the ACS URL. (samlidp's login form, shown in the middle of a login,
// drops the HTTP-Redirect binding's signature: signing in first keeps
// signed requests testable.)
func (ti *testIdP) SignIn(t testing.TB, authURL, user, password string) (samlResponse, relay, acs string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar}
	resp, err := b.PostForm(ti.srv.URL+"/login", url.Values{"user": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `"UserName"`) && !strings.Contains(string(page), user) {
		t.Fatalf("sign-in at the IdP: %d %s", resp.StatusCode, page)
	}
	resp, err = b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	sr, rs, act := samlResponseField.FindSubmatch(page), relayStateField.FindSubmatch(page), formAction.FindSubmatch(page)
	if sr == nil || rs == nil || act == nil {
		t.Fatalf("no SAML response form from the IdP: %s", page)
	}
	return html.UnescapeString(string(sr[1])), html.UnescapeString(string(rs[1])), html.UnescapeString(string(act[1]))
}

type samlFixture struct {
	*fixture
	idp *testIdP
}

const samlConnectorName = "corp"

func newSAMLFixture(t *testing.T, mods ...func(*wire.SAMLConnectorSpec)) *samlFixture {
	f := newFixture(t)
	ctx := context.Background()
	ti := startTestIdP(t)
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), &policy.Role{Kind: "role", Version: "v1", Metadata: policy.Metadata{Name: "ops"},
		Spec: policy.RoleSpec{Allow: policy.Conditions{Logins: []string{"{{external.logins}}"}, NodeLabels: policy.Labels{"*": {"*"}}}}}); err != nil {
		t.Fatal(err)
	}
	spec := wire.SAMLConnectorSpec{IdPMetadataURL: ti.srv.URL + "/metadata", UsernameAttribute: "uid",
		AttributesToRoles: []wire.AttributeMapping{{Attribute: "eduPersonAffiliation", Value: "ops-*", Roles: []string{"ops"}}},
		Traits:            map[string]string{"logins": "sn"}}
	for _, m := range mods {
		m(&spec)
	}
	conn := &auth.SAMLConnector{Kind: wire.KindSAML, Metadata: wire.ConnectorMetadata{Name: samlConnectorName}, Spec: spec}
	if err := f.a.UpsertSAMLConnector(ctx, auth.AdminCaller(), conn); err != nil {
		t.Fatal(err)
	}
	md, err := f.a.SAMLMetadata(ctx, samlConnectorName)
	if err != nil {
		t.Fatal(err)
	}
	ti.register(t, "warden", md)
	return &samlFixture{fixture: f, idp: ti}
}

type samlLogin struct {
	begin        *wire.SSOBeginResponse
	samlResponse string
	relay        string
}

// start begins a login and signs in at the IdP.
func (f *samlFixture) start(user string) samlLogin {
	f.t.Helper()
	begin, err := f.a.BeginSSO(context.Background(), wire.SSOBeginRequest{Connector: samlConnectorName, PublicKey: pubKey(f.t),
		ClientRedirect: "http://127.0.0.1:1/callback", RemoteAddr: "127.0.0.1"})
	if err != nil {
		f.t.Fatal(err)
	}
	sr, relay, acs := f.idp.SignIn(f.t, begin.AuthURL, user, "pw")
	if acs != "https://proxy:3080/v1/sso/saml/corp/acs" {
		f.t.Fatalf("the IdP posts to %s", acs)
	}
	return samlLogin{begin: begin, samlResponse: sr, relay: relay}
}

// finish posts the response to the ACS and fetches the outcome, as the
// client would.
func (f *samlFixture) finish(l samlLogin) (*wire.LoginResponse, error) {
	f.t.Helper()
	next, err := f.a.SAMLACS(context.Background(), samlConnectorName, l.samlResponse, l.relay, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return f.a.ResultOIDC(context.Background(), wire.SSOResultRequest{ID: l.begin.ID, ResultToken: l.begin.ResultToken,
		Code: callbackCode(f.t, next, "http://127.0.0.1:1/callback", l.begin.ID)})
}

// callbackCode checks where the proxy sends the browser after the IdP
// (the client's callback with the login id and a one-time code) and
// returns the code.
func callbackCode(t testing.TB, next, callback, id string) string {
	t.Helper()
	u, err := url.Parse(next)
	q := u.Query()
	if err != nil || !strings.HasPrefix(next, callback+"?") || q.Get("id") != id || len(q.Get("code")) != 2*identity.TokenBytes || len(q) != 2 {
		t.Fatalf("the browser is sent to %s, want %s?id=%s&code=...", next, callback, id)
	}
	return q.Get("code")
}

func TestSAMLLogin(t *testing.T) {
	f := newSAMLFixture(t, func(s *wire.SAMLConnectorSpec) { s.SignRequests = true })
	ctx := context.Background()
	md, err := f.a.SAMLMetadata(ctx, samlConnectorName)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`entityID="https://proxy:3080/v1/sso/saml/corp/metadata"`, `Location="https://proxy:3080/v1/sso/saml/corp/acs"`,
		`WantAssertionsSigned="true"`, `use="signing"`} {
		if !strings.Contains(string(md), want) {
			t.Errorf("SP metadata lacks %s:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), `use="encryption"`) || strings.Contains(string(md), "PRIVATE") {
		t.Errorf("SP metadata: %s", md)
	}
	l := f.start("alice")
	u, _ := url.Parse(l.begin.AuthURL)
	if q := u.Query(); q.Get("Signature") == "" || q.Get("SigAlg") != dsig.RSASHA256SignatureMethod || q.Get("RelayState") == "" {
		t.Errorf("the AuthnRequest is not signed: %s", l.begin.AuthURL)
	}
	resp, err := f.finish(l)
	if err != nil {
		t.Fatal(err)
	}
	if resp.User != "alice" || strings.Join(resp.Roles, ",") != "ops" || strings.Join(resp.Logins, ",") != "ops" {
		t.Fatalf("login: user %q roles %v logins %v", resp.User, resp.Roles, resp.Logins)
	}
	users, err := f.a.ListUsers(ctx, auth.AdminCaller())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Type != identity.TypeSSO || users[0].Connector != samlConnectorName {
		t.Fatalf("users: %+v", users)
	}
	// The RelayState is single-use.
	if _, err := f.a.SAMLACS(ctx, samlConnectorName, l.samlResponse, l.relay, "127.0.0.1"); !errors.Is(err, auth.ErrUnauthenticated) ||
		!strings.Contains(err.Error(), "already used") {
		t.Fatalf("the same response again: %v", err)
	}
	// The signing key shows nowhere: not in the connector.
	got, err := f.a.GetSAMLConnector(ctx, auth.AdminCaller(), samlConnectorName)
	if err != nil || !got.Spec.SignRequests {
		t.Fatalf("get: %+v %v", got, err)
	}
	// Bob's groups map to no role.
	if _, err := f.finish(f.start("bob")); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "attributes map to no role") || strings.Count(err.Error(), "access denied") != 1 {
		t.Fatalf("bob: %v", err)
	}
	evs, err := f.a.SearchAudit(ctx, auth.AdminCaller(), audit.Query{Type: audit.UserLogin})
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused bool
	for _, e := range evs {
		if e.Fields["method"] == "saml" {
			ok = ok || e.Success && e.User == "alice"
			refused = refused || !e.Success && e.Error == "no role matches the attributes"
		}
	}
	if !ok || !refused {
		t.Fatalf("audit: %+v", evs)
	}
}

// idpSigner signs as the test IdP does.
func (ti *testIdP) sign(t *testing.T, el *etree.Element) *etree.Element {
	t.Helper()
	ctx := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{ti.cert.Raw}, PrivateKey: ti.key, Leaf: ti.cert}))
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	signed, err := ctx.SignEnveloped(el)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// tamper decodes a response, lets edit change the document, and encodes
// it again.
func tamper(t *testing.T, samlResponse string, edit func(doc *etree.Document)) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(samlResponse)
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

func removeSignature(el *etree.Element) {
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" {
			el.RemoveChild(c)
		}
	}
}

func child(el *etree.Element, tag string) *etree.Element {
	for _, c := range el.ChildElements() {
		if c.Tag == tag {
			return c
		}
	}
	return nil
}

// resignResponse signs the Response again (after an edit), as the IdP.
func (f *samlFixture) resignResponse(doc *etree.Document) {
	root := doc.Root()
	removeSignature(root)
	doc.SetRoot(f.idp.sign(f.t, root))
}

// TestSAMLRefusals: each check on a SAML response, against an otherwise
// good login of a user the mapping admits. Without Warden's own check,
// the ones marked "warden" would log in.
func TestSAMLRefusals(t *testing.T) {
	f := newSAMLFixture(t)
	ctx := context.Background()
	refused := func(t *testing.T, l samlLogin, want string) {
		t.Helper()
		resp, err := f.finish(l)
		if err == nil {
			t.Fatalf("logged in as %q; want a refusal (%s)", resp.User, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refused with %v; want %q", err, want)
		}
	}
	t.Run("unsigned", func(t *testing.T) {
		l := f.start("alice")
		l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
			removeSignature(doc.Root())
			removeSignature(child(doc.Root(), "Assertion"))
		})
		refused(t, l, "signature")
	})
	t.Run("warden: assertion unsigned in a signed response", func(t *testing.T) {
		l := f.start("alice")
		l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
			removeSignature(child(doc.Root(), "Assertion"))
			f.resignResponse(doc)
		})
		refused(t, l, "the assertion is not signed")
	})
	t.Run("assertion signed by another key", func(t *testing.T) {
		other := startTestIdP(t)
		l := f.start("alice")
		l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
			root := doc.Root()
			removeSignature(root)
			a := child(root, "Assertion")
			removeSignature(a)
			root.RemoveChild(a)
			root.AddChild(other.sign(t, a))
		})
		refused(t, l, "signature")
	})
	// Signature wrapping: the signed assertion stays, somewhere, and a
	// forged one (alice-evil's login, the NameID and uid changed to alice)
	// is where a careless SP would read it.
	forge := func(a *etree.Element) *etree.Element {
		e := a.Copy()
		removeSignature(e)
		e.CreateAttr("ID", "id-forged")
		for _, v := range e.FindElements(".//AttributeValue") {
			if v.Text() == "alice-evil" {
				v.SetText("alice")
			}
		}
		return e
	}
	for _, tc := range []struct {
		name string
		wrap func(root, signed *etree.Element)
	}{
		{"forged assertion first", func(root, signed *etree.Element) {
			root.InsertChildAt(signed.Index(), forge(signed))
		}},
		{"forged assertion last", func(root, signed *etree.Element) { root.AddChild(forge(signed)) }},
		{"signed assertion inside the forged one", func(root, signed *etree.Element) {
			e := forge(signed)
			root.RemoveChild(signed)
			e.AddChild(signed)
			root.AddChild(e)
		}},
		{"signed assertion in Extensions", func(root, signed *etree.Element) {
			e := forge(signed)
			root.RemoveChild(signed)
			ext := root.CreateElement("samlp:Extensions")
			ext.AddChild(signed)
			root.AddChild(e)
		}},
		{"forged assertion with the signed one's ID", func(root, signed *etree.Element) {
			e := forge(signed)
			e.CreateAttr("ID", signed.SelectAttrValue("ID", ""))
			e.AddChild(child(signed, "Signature").Copy())
			root.RemoveChild(signed)
			root.AddChild(e)
		}},
	} {
		t.Run("wrapping: "+tc.name, func(t *testing.T) {
			l := f.start("alice-evil")
			l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
				removeSignature(doc.Root())
				tc.wrap(doc.Root(), child(doc.Root(), "Assertion"))
			})
			resp, err := f.finish(l)
			if err == nil {
				t.Fatalf("signature wrapping logged in as %q", resp.User)
			}
		})
	}
	// A comment in the NameID or an attribute value leaves the signature
	// valid (canonicalization drops comments): a parser that reads the
	// first text node only would see "alice" where "alice-evil" was signed.
	for _, where := range []string{"NameID", "uid"} {
		t.Run("warden: comment injection in "+where, func(t *testing.T) {
			l := f.start("alice-evil")
			l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
				var el *etree.Element
				if where == "NameID" {
					el = doc.FindElement("//Subject/NameID")
				} else {
					for _, v := range doc.FindElements("//AttributeValue") {
						if v.Text() == "alice-evil" {
							el = v
						}
					}
				}
				text := el.Text()
				i := strings.IndexAny(text, "-@")
				el.SetText(text[:i])
				el.CreateComment("")
				el.CreateText(text[i:])
			})
			refused(t, l, "comments are not allowed")
		})
	}
	for _, tc := range []struct {
		name string
		edit func(*saml.Assertion)
		want string
	}{
		{"audience", func(a *saml.Assertion) {
			a.Conditions.AudienceRestrictions[0].Audience.Value = "https://other.example.com/sp"
		}, "udience"}, // crewjam's "Audience", or Warden's "audience"
		{"recipient", func(a *saml.Assertion) {
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = "https://other.example.com/acs"
		}, "invalid SAML response"},
		{"InResponseTo", func(a *saml.Assertion) {
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.InResponseTo = "id-someone-elses-request"
		}, "invalid SAML response"},
		{"issuer", func(a *saml.Assertion) { a.Issuer.Value = "https://evil.example.com" }, "invalid SAML response"},
		{"warden: expired beyond a minute's skew", func(a *saml.Assertion) {
			past := time.Now().Add(-100 * time.Second)
			a.Conditions.NotOnOrAfter = past
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.NotOnOrAfter = past
		}, "expired"},
		{"warden: not yet valid beyond a minute's skew", func(a *saml.Assertion) {
			a.Conditions.NotBefore = time.Now().Add(100 * time.Second)
		}, "not valid before"},
		{"long expired", func(a *saml.Assertion) {
			past := time.Now().Add(-time.Hour)
			a.Conditions.NotOnOrAfter = past
			a.Subject.SubjectConfirmations[0].SubjectConfirmationData.NotOnOrAfter = past
		}, "invalid SAML response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.idp.setEdit(tc.edit)
			defer f.idp.setEdit(nil)
			refused(t, f.start("alice"), tc.want)
		})
	}
	t.Run("destination", func(t *testing.T) {
		l := f.start("alice")
		l.samlResponse = tamper(t, l.samlResponse, func(doc *etree.Document) {
			doc.Root().CreateAttr("Destination", "https://other.example.com/acs")
			f.resignResponse(doc)
		})
		refused(t, l, "invalid SAML response")
	})
	t.Run("InResponseTo of another login", func(t *testing.T) {
		a, b := f.start("alice"), f.start("alice")
		a.relay, a.begin = b.relay, b.begin
		refused(t, a, "invalid SAML response")
	})
	t.Run("posted to another connector", func(t *testing.T) {
		l := f.start("alice")
		next, err := f.a.SAMLACS(ctx, "other", l.samlResponse, l.relay, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.a.ResultOIDC(ctx, wire.SSOResultRequest{ID: l.begin.ID, ResultToken: l.begin.ResultToken,
			Code: callbackCode(t, next, "http://127.0.0.1:1/callback", l.begin.ID)})
		if err == nil || !strings.Contains(err.Error(), `posted to connector "other"`) {
			t.Fatalf("a response posted to another connector's ACS: %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		l := f.start("alice")
		l.samlResponse = strings.Repeat("A", auth.MaxSAMLResponse+4)
		refused(t, l, "larger than")
	})
	// Replay: the same assertion for a second pending login with the same
	// request ID (as if the RelayState check were bypassed) is refused,
	// also by an auth restarted on the same state.
	t.Run("warden: replay", func(t *testing.T) {
		l := f.start("alice")
		relay2 := auth.CopySAMLPending(t, f.a, l.relay)
		relay3 := auth.CopySAMLPending(t, f.a, l.relay)
		if _, err := f.finish(l); err != nil {
			t.Fatal(err)
		}
		l.relay = relay2
		refused(t, l, "already been used")
		a2, err := auth.New(ctx, auth.Config{ClusterName: "test", Backend: f.b, Audit: f.b.AuditLog(), PublicAddr: "proxy:3080", Now: f.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		next, err := a2.SAMLACS(ctx, samlConnectorName, l.samlResponse, relay3, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = a2.ResultOIDC(ctx, wire.SSOResultRequest{ID: l.begin.ID, ResultToken: l.begin.ResultToken,
			Code: callbackCode(t, next, "http://127.0.0.1:1/callback", l.begin.ID)})
		if err == nil || !strings.Contains(err.Error(), "already been used") {
			t.Fatalf("replay after a restart: %v", err)
		}
	})
	// A good login still works after all this.
	if resp, err := f.finish(f.start("alice")); err != nil || resp.User != "alice" {
		t.Fatalf("login: %v", err)
	}
}

func TestSAMLIdPUnreachable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.a.UpsertRole(ctx, auth.AdminCaller(), &policy.Role{Kind: "role", Version: "v1", Metadata: policy.Metadata{Name: "ops"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	conn := &auth.SAMLConnector{Kind: wire.KindSAML, Metadata: wire.ConnectorMetadata{Name: "down"}, Spec: wire.SAMLConnectorSpec{
		IdPMetadataURL: srv.URL + "/metadata", AttributesToRoles: []wire.AttributeMapping{{Attribute: "g", Value: "x", Roles: []string{"ops"}}}}}
	if err := f.a.UpsertSAMLConnector(ctx, auth.AdminCaller(), conn); err != nil {
		t.Fatal(err)
	}
	_, err := f.a.BeginSSO(ctx, wire.SSOBeginRequest{Connector: "down", PublicKey: pubKey(t), ClientRedirect: "http://127.0.0.1:1/callback"})
	if !errors.Is(err, wire.ErrUpstream) || !strings.Contains(err.Error(), `identity provider of connector "down" is unreachable`) {
		t.Fatalf("begin with the IdP down: %v", err)
	}
	// Inline metadata that is not an IdP's is refused when applied.
	conn.Spec.IdPMetadataURL, conn.Spec.IdPMetadataXML = "", `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"></EntityDescriptor>`
	if err := f.a.UpsertSAMLConnector(ctx, auth.AdminCaller(), conn); !errors.Is(err, auth.ErrBadRequest) || !strings.Contains(err.Error(), "IDPSSODescriptor") {
		t.Fatalf("apply with SP metadata as the IdP's: %v", err)
	}
}

func TestMapAttributes(t *testing.T) {
	spec := wire.SAMLConnectorSpec{AttributesToRoles: []wire.AttributeMapping{
		{Attribute: "groups", Value: "ops-*", Roles: []string{"ops"}},
		{Attribute: "mail", Value: `^[a-z]+@example\.com$`, Roles: []string{"access"}},
	}, Traits: map[string]string{"logins": "uid"}}
	roles, traits := auth.MapAttributes(spec, map[string]any{"groups": []any{"staff", "ops-eu"}, "mail": []any{"ann@example.com.evil"}, "uid": []any{"ann"}})
	if fmt.Sprint(roles) != "[ops]" || fmt.Sprint(traits) != "map[logins:[ann]]" {
		t.Fatalf("roles %v traits %v", roles, traits)
	}
}

// TestSAMLUsernameDomain: the NameID (an e-mail address) becomes the user
// name once the connector's domain is taken off; another domain, or one
// that only starts like it, is refused.
func TestSAMLUsernameDomain(t *testing.T) {
	f := newSAMLFixture(t, func(s *wire.SAMLConnectorSpec) { s.UsernameAttribute, s.UsernameDomain = "", "example.com" })
	resp, err := f.finish(f.start("alice"))
	if err != nil || resp.User != "alice" {
		t.Fatalf("login: %+v %v", resp, err)
	}
	for _, v := range []string{"ann@example.com.evil.io", "ann@evil.io", "ann", "ann@x@example.com"} {
		if got, err := wire.UsernameFrom(v, "example.com"); err == nil {
			t.Errorf("UsernameFrom(%q) = %q", v, got)
		}
	}
	if got, err := wire.UsernameFrom("Ann.B@EXAMPLE.com", "example.com"); err != nil || got != "ann.b" {
		t.Errorf("UsernameFrom: %q %v", got, err)
	}
}

// TestSAMLMetadataStale: once the IdP's metadata was fetched, logins go on
// with it when a refetch fails (the IdP's metadata endpoint down).
func TestSAMLMetadataStale(t *testing.T) {
	f := newSAMLFixture(t)
	if _, err := f.finish(f.start("alice")); err != nil {
		t.Fatal(err)
	}
	f.idp.metadataDown.Store(true)
	auth.AgeSAMLMetadata(f.a, samlConnectorName, time.Hour)
	if resp, err := f.finish(f.start("alice")); err != nil || resp.User != "alice" {
		t.Fatalf("login with the IdP's metadata endpoint down: %v", err)
	}
}

// TestSAMLInlineMetadata: the IdP's metadata given inline (a file from the
// IdP, as Google gives) works as the URL does.
func TestSAMLInlineMetadata(t *testing.T) {
	f := newSAMLFixture(t, func(s *wire.SAMLConnectorSpec) {
		resp, err := http.Get(s.IdPMetadataURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		s.IdPMetadataURL, s.IdPMetadataXML = "", string(b)
	})
	if resp, err := f.finish(f.start("alice")); err != nil || resp.User != "alice" {
		t.Fatalf("login with inline IdP metadata: %v", err)
	}
}
