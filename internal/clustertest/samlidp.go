package clustertest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	"golang.org/x/crypto/bcrypt"
)

// SAMLIdP is a real SAML identity provider for tests: crewjam/saml's
// samlidp (a login form, signed responses and signed assertions), on a
// loopback HTTP port. Its users' password is their name with "-pw".
type SAMLIdP struct {
	URL string // its base; metadata at URL/metadata
	idp *samlidp.Server
	// Time is the time spent in the IdP's handlers (for benchmarks that
	// take it out of Warden's share).
	mu   sync.Mutex
	time time.Duration
}

// SAMLUser is a user of a SAMLIdP: uid Name, mail Email, the groups as
// eduPersonAffiliation, the surname as sn.
type SAMLUser struct {
	Name, Email, Surname string
	Groups               []string
}

// StartSAMLIdP starts a SAML IdP with these users.
func StartSAMLIdP(t testing.TB, users ...SAMLUser) *SAMLIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clustertest saml idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ti := &SAMLIdP{}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		ti.mu.Lock()
		ti.time += time.Since(start)
		ti.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	ti.URL = srv.URL
	u, _ := url.Parse(srv.URL)
	if ti.idp, err = samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}}); err != nil {
		t.Fatal(err)
	}
	h = ti.idp
	for _, su := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(su.Name+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := ti.idp.Store.Put("/users/"+su.Name, samlidp.User{Name: su.Name, Email: su.Email, Surname: su.Surname,
			Groups: su.Groups, HashedPassword: hash}); err != nil {
			t.Fatal(err)
		}
	}
	return ti
}

// Time is the time spent in the IdP so far.
func (ti *SAMLIdP) Time() time.Duration {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.time
}

// Register gives the IdP Warden's SP metadata, fetched from the proxy as
// an admin would (https://PROXY/v1/sso/saml/NAME/metadata).
func (ti *SAMLIdP) Register(t testing.TB, tlsCA, metadataURL string) {
	t.Helper()
	resp, err := HTTPSClient(tlsCA, nil).Get(metadataURL)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SP metadata: %d %s", resp.StatusCode, md)
	}
	req, _ := http.NewRequest(http.MethodPut, ti.URL+"/services/warden", bytes.NewReader(md))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("register the SP with the IdP: %d %s", resp.StatusCode, body)
	}
}

// HTTPSClient trusts the cluster's TLS CA (and plain HTTP), with a cookie
// jar when jar is given.
func HTTPSClient(tlsCA string, jar http.CookieJar) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(tlsCA))
	return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

var (
	samlFormAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	samlField      = func(name string) *regexp.Regexp { return regexp.MustCompile(`name="` + name + `" value="([^"]*)"`) }
)

// postForm finds the form on page, sets fields, and posts it as a
// browser would (following the redirects).
func postForm(t testing.TB, b *http.Client, page []byte, fields url.Values, names ...string) (*http.Response, []byte) {
	t.Helper()
	action := samlFormAction.FindSubmatch(page)
	if action == nil {
		t.Fatalf("no form on the page: %s", page)
	}
	if fields == nil {
		fields = url.Values{}
	}
	for _, n := range names {
		m := samlField(n).FindSubmatch(page)
		if m == nil {
			t.Fatalf("no %s in the form: %s", n, page)
		}
		fields.Set(n, html.UnescapeString(string(m[1])))
	}
	resp, err := b.PostForm(html.UnescapeString(string(action[1])), fields)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// Browse plays a browser through a SAML login: it opens the sign-in URL
// (Warden's redirect to the IdP), fills the IdP's login form as user,
// posts the IdP's response form to Warden's ACS, and follows the
// redirects to the end (the CLI's loopback listener, or the web UI). It
// returns the last response and its body. A nil b is a fresh browser.
func (ti *SAMLIdP) Browse(t testing.TB, b *http.Client, tlsCA, authURL, user string) (*http.Response, []byte) {
	t.Helper()
	if b == nil {
		jar, _ := cookiejar.New(nil)
		b = HTTPSClient(tlsCA, jar)
	}
	return PostSAMLResponse(t, b, ti.SignIn(t, b, authURL, user))
}

// SignIn opens the sign-in URL and fills the IdP's login form as user; it
// returns the IdP's answer: the page whose form posts the response to
// Warden's ACS.
func (ti *SAMLIdP) SignIn(t testing.TB, b *http.Client, authURL, user string) []byte {
	t.Helper()
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, page = postForm(t, b, page, url.Values{"user": {user}, "password": {user + "-pw"}}, "SAMLRequest", "RelayState")
	return page
}

// PostSAMLResponse posts the IdP's response form (page) as the browser
// does.
func PostSAMLResponse(t testing.TB, b *http.Client, page []byte) (*http.Response, []byte) {
	t.Helper()
	return postForm(t, b, page, nil, "SAMLResponse", "RelayState")
}
