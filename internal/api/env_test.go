package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage/sqlite"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// The tests of this package run the API over real TLS against a real auth
// service on SQLite in a temporary directory: no proxy, node or cluster.

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves to the next TOTP period (codes are good once per period).
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// inventory stands in for the proxy's registry of node tunnels, which
// these tests have no proxy for.
type inventory []auth.Node

func (i inventory) Nodes() []auth.Node { return i }

type env struct {
	t     *testing.T
	a     *auth.Server
	h     *Handler
	clock *clock
	addr  string
	log   *syncbuf.Buffer // the handler's log
	// patterns collects the route patterns requests were served by.
	patterns map[string]bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	// An hour ago: each TOTP code moves the clock on by a period, and the
	// certificates auth issues must be valid by the real clock that TLS
	// checks them with.
	clk := &clock{t: time.Now().Add(-time.Hour).Truncate(30 * time.Second).Add(5 * time.Second)}
	b, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "w.db"), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	_, auditKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	store, err := recording.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, auth.Config{ClusterName: "test", Backend: b, Audit: b.AuditLog(), PublicAddr: "proxy:3080",
		WebAuthn: auth.WebAuthnConfig{RPID: "proxy.example", Origins: []string{"https://proxy.example:3080"}},
		Now:      clk.Now, AuditKey: auditKey, Recordings: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.SetInventory(inventory{
		{ID: "11111111-1111-1111-1111-111111111111", Name: "web1", Labels: map[string]string{"env": "dev"}},
		{ID: "22222222-2222-2222-2222-222222222222", Name: "db1", Labels: map[string]string{"env": "prod"}},
	})
	logBuf := &syncbuf.Buffer{}
	h := NewHandler(a, slog.New(slog.NewTextHandler(logBuf, nil)))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := a.Authority().IssueTLSServer(&key.PublicKey, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(SecurityHeaders(h))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    a.Authority().CertPool(),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &env{t: t, a: a, h: h, clock: clk, addr: srv.Listener.Addr().String(), log: logBuf, patterns: map[string]bool{}}
}

// client is a Client trusting the cluster's TLS CA, presenting cert (nil:
// none).
func (e *env) client(cert *tls.Certificate) *Client {
	e.t.Helper()
	c, err := NewClient(ClientConfig{Addr: e.addr, RootCAs: e.a.Authority().CertPool(), Certificate: cert})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// admin is a client with the local admin identity.
func (e *env) admin() *Client {
	e.t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	der, err := e.a.IssueAdminIdentity(priv.Public(), 24*time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.client(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv})
}

// newKey is a fresh Ed25519 key and its public half as an authorized_keys
// line, as clients send it.
func newKey(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, string(ssh.MarshalAuthorizedKey(pub))
}

// certClient is a client presenting the TLS certificate of certs for priv.
func (e *env) certClient(priv ed25519.PrivateKey, certs auth.Certs) *Client {
	e.t.Helper()
	block, _ := pem.Decode([]byte(certs.TLSCert))
	if block == nil {
		e.t.Fatalf("no TLS certificate in %+v", certs)
	}
	return e.client(&tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: priv})
}

// totp is the current TOTP code of secret (after moving the clock on to a
// period not used yet).
func (e *env) totp(secret string) string {
	e.t.Helper()
	e.clock.Advance(30 * time.Second)
	code, err := identity.TOTPCode(secret, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// call sends method path with body (nil: none; a string or []byte: sent
// as is; anything else: as JSON) through c with the extra headers hdr,
// checks the status, and returns the response body. It records which
// route pattern served the request.
func (e *env) call(c *Client, method, path string, body any, want int, hdr ...string) []byte {
	e.t.Helper()
	resp, data := e.send(c, method, path, body, hdr...)
	if resp.StatusCode != want {
		e.t.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	return data
}

func (e *env) send(c *Client, method, path string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewReader([]byte(b))
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	e.served(method, path)
	resp, err := c.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	return resp, data
}

// served records which route pattern serves method path.
func (e *env) served(method, path string) {
	e.t.Helper()
	req, err := http.NewRequest(method, "https://"+e.addr+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, pattern := e.h.mux.Handler(req); pattern != "" {
		e.patterns[pattern] = true
	}
}

// decodeAs decodes a JSON body.
func decodeAs[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}
