package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/syncbuf"
)

// TestErrorsBecomeStatusCodes: the one place errors become status codes.
// Each error auth returns (wrapped, as auth wraps them) answers its status
// with the message, and the client turns the answer back into an error
// that errors.Is matches against the same sentinel.
func TestErrorsBecomeStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		is     error  // what the client's error matches (nil: nothing to match)
		code   string // Error.Code
	}{
		{"bad request", fmt.Errorf("%w: name is empty", auth.ErrBadRequest), http.StatusBadRequest, auth.ErrBadRequest, ""},
		{"unauthenticated", fmt.Errorf("%w: run warden login", auth.ErrUnauthenticated), http.StatusUnauthorized, auth.ErrUnauthenticated, ""},
		{"access denied", fmt.Errorf("%w: not yours", auth.ErrAccessDenied), http.StatusForbidden, auth.ErrAccessDenied, ""},
		{"policy denial", fmt.Errorf("ssh: %w", &policy.DeniedError{Reason: "no role allows login root"}), http.StatusForbidden, auth.ErrAccessDenied, ""},
		{"not found", fmt.Errorf("user %w", storage.ErrNotFound), http.StatusNotFound, storage.ErrNotFound, ""},
		{"already exists", fmt.Errorf("user %w", storage.ErrAlreadyExists), http.StatusConflict, storage.ErrAlreadyExists, ""},
		{"compare failed", storage.ErrCompareFailed, http.StatusConflict, storage.ErrCompareFailed, ""},
		{"conflict", fmt.Errorf("%w: complete", auth.ErrConflict), http.StatusConflict, auth.ErrConflict, ""},
		{"recording complete", fmt.Errorf("%w: %w", auth.ErrConflict, recording.ErrCompleted), http.StatusConflict, recording.ErrCompleted, CodeRecordingComplete},
		{"recording offset", &recording.OffsetError{Have: 42}, http.StatusConflict, nil, CodeOffset},
		{"unknown session", fmt.Errorf("%w: %w", auth.ErrAccessDenied, recording.ErrUnknownSession), http.StatusForbidden, recording.ErrUnknownSession, CodeSessionUnknown},
		{"body too large", tooLarge(&http.MaxBytesError{Limit: 10}), http.StatusRequestEntityTooLarge, nil, ""},
		{"throttled", &identity.ThrottledError{RetryAfter: 7 * time.Second}, http.StatusTooManyRequests, auth.ErrThrottled, ""},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			h := &Handler{log: slog.New(slog.NewTextHandler(logs, nil))}
			w := httptest.NewRecorder()
			h.fail(w, tc.err)
			resp := w.Result()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			err := readResponse(resp, nil)
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("client error %#v, want status %d code %q", err, tc.status, tc.code)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			switch tc.status {
			case http.StatusInternalServerError:
				// The cause goes to the log, not to the client.
				if strings.Contains(e.Message, "disk") || !strings.Contains(logs.String(), "disk on fire") {
					t.Errorf("message %q, log %q", e.Message, logs.String())
				}
			default:
				if e.Message != tc.err.Error() {
					t.Errorf("message %q, want %q", e.Message, tc.err.Error())
				}
			}
			if tc.code == CodeOffset && e.Length != 42 {
				t.Errorf("offset conflict: Length %d, want 42", e.Length)
			}
			if tc.status == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "7" {
				t.Errorf("Retry-After %q, want 7", resp.Header.Get("Retry-After"))
			}
		})
	}
}

// TestCanceledRequestIsNotAnError: a client that went away is answered 503
// and logged at debug level only, not as an internal error.
func TestCanceledRequestIsNotAnError(t *testing.T) {
	logs := &syncbuf.Buffer{}
	h := &Handler{log: slog.New(slog.NewTextHandler(logs, nil))}
	w := httptest.NewRecorder()
	h.fail(w, fmt.Errorf("list users: %w", context.Canceled))
	if w.Code != http.StatusServiceUnavailable || logs.Len() != 0 {
		t.Errorf("status %d, log %q", w.Code, logs.String())
	}
}

// TestUnexpectedResponseIsAnError: an answer that is not the API's (a
// proxy's HTML error page) still becomes an error with the status.
func TestUnexpectedResponseIsAnError(t *testing.T) {
	resp := &http.Response{StatusCode: http.StatusBadGateway, Status: "502 Bad Gateway",
		Body: io.NopCloser(strings.NewReader("<html>bad gateway</html>"))}
	err := readResponse(resp, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || !strings.Contains(e.Message, "502") {
		t.Fatalf("%#v", err)
	}
}

// TestBodyLimits: request bodies are bounded (2 MiB; a recording chunk
// 1 MiB) and a larger one answers 413 before anything acts on it;
// malformed or unexpected JSON answers 400.
func TestBodyLimits(t *testing.T) {
	e := newEnv(t)
	admin := e.admin()

	name := strings.Repeat("a", maxBody)
	body := `{"name":"` + name + `"}`
	msg := decodeAs[Error](t, e.call(admin, "POST", "/v1/users", body, http.StatusRequestEntityTooLarge))
	if !strings.Contains(msg.Message, fmt.Sprint(maxBody)) {
		t.Errorf("413 message %q does not give the limit", msg.Message)
	}
	if users, err := admin.ListUsers(patience.Context(t)); err != nil || len(users) != 0 {
		t.Errorf("after a refused body: users %+v, %v", users, err)
	}

	e.call(admin, "POST", "/v1/users", `{"name":"bob",`, http.StatusBadRequest)
	msg = decodeAs[Error](t, e.call(admin, "POST", "/v1/users", `{"name":"bob","admin":true}`, http.StatusBadRequest))
	if !strings.Contains(msg.Message, "admin") {
		t.Errorf("unknown field: %q", msg.Message)
	}
	e.call(admin, "POST", "/v1/users", `["bob"]`, http.StatusBadRequest)

	// A recording chunk: the limit is recording.MaxChunk, checked before
	// auth looks at the session (which this caller may not record).
	meta, err := json.Marshal(recording.Meta{SessionID: "s1", User: "alice", Login: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	hdr := base64.StdEncoding.EncodeToString(meta)
	e.call(admin, "PUT", "/v1/recordings/s1?offset=0", make([]byte, recording.MaxChunk+1), http.StatusRequestEntityTooLarge, RecordingMetaHeader, hdr)
	e.call(admin, "PUT", "/v1/recordings/s1?offset=0", make([]byte, recording.MaxChunk), http.StatusForbidden, RecordingMetaHeader, hdr)
	e.call(admin, "PUT", "/v1/recordings/s1?offset=0", "x", http.StatusBadRequest, RecordingMetaHeader, base64.StdEncoding.EncodeToString(make([]byte, 9<<10)))
	e.call(admin, "PUT", "/v1/recordings/s1?offset=-1", "x", http.StatusBadRequest, RecordingMetaHeader, hdr)
}

// TestCallersMustPresentCurrentCertificates: routes other than ping,
// login, signup and join need a client certificate from the cluster's CA
// (401 without), and it is checked against the current state (403 for a
// user that no longer exists); a node cannot call what is for users or
// admins.
func TestCallersMustPresentCurrentCertificates(t *testing.T) {
	e := newEnv(t)
	open := e.client(nil)
	msg := decodeAs[Error](t, e.call(open, "GET", "/v1/users", nil, http.StatusUnauthorized))
	if !strings.Contains(msg.Message, "client certificate") {
		t.Errorf("401 message %q", msg.Message)
	}
	e.call(open, "GET", "/v1/ping", nil, http.StatusOK)

	issue := func(id ca.TLSIdentity) *Client {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id.Issued = e.clock.Now()
		der, err := e.a.Authority().IssueTLSClient(priv.Public(), id, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return e.client(&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv})
	}
	ghost := issue(ca.TLSIdentity{Kind: auth.KindUser, Username: "ghost", Roles: []string{"editor"}})
	msg = decodeAs[Error](t, e.call(ghost, "GET", "/v1/whoami", nil, http.StatusForbidden))
	if !strings.Contains(msg.Message, "ghost") {
		t.Errorf("403 message %q", msg.Message)
	}
	node := issue(ca.TLSIdentity{Kind: auth.KindNode, NodeID: "33333333-3333-3333-3333-333333333333"})
	e.call(node, "GET", "/v1/users", nil, http.StatusForbidden)
	e.call(node, "POST", "/v1/roles/x", nil, http.StatusMethodNotAllowed)
}

// TestSecurityHeaders: every answer, error or not, carries the headers
// that keep browsers from misusing the API, and is not cached.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	open := e.client(nil)
	for _, path := range []string{"/v1/ping", "/v1/users", "/v1/nothing"} {
		resp, _ := e.send(open, "GET", path, nil)
		for k, want := range map[string]string{
			"Strict-Transport-Security": "max-age=",
			"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Referrer-Policy":           "no-referrer",
			"Cache-Control":             "no-store",
		} {
			if got := resp.Header.Get(k); !strings.Contains(got, want) {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
}

// TestPingCACheck: the client trusts the CA a proxy hands out only if it
// is one certificate whose fingerprint is the one the proxy claims.
func TestPingCACheck(t *testing.T) {
	e := newEnv(t)
	ping, err := e.client(nil).Ping(patience.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	good := *ping
	for name, mod := range map[string]func(p *PingResponse){
		"another fingerprint": func(p *PingResponse) { p.TLSCAFingerprint = Fingerprint([]byte("other")) },
		"two certificates":    func(p *PingResponse) { p.TLSCA += p.TLSCA },
		"not PEM":             func(p *PingResponse) { p.TLSCA = "hello" },
		"not a certificate": func(p *PingResponse) {
			p.TLSCA = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
		},
	} {
		p := good
		mod(&p)
		if err := p.checkCA(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p := good
	p.TLSCAFingerprint = strings.ToUpper(p.TLSCAFingerprint)
	if err := p.checkCA(); err != nil || p.TLSCAFingerprint != good.TLSCAFingerprint {
		t.Errorf("upper-case fingerprint: %v, %q", err, p.TLSCAFingerprint)
	}
}
