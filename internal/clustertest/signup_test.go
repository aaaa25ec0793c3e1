//go:build integration

package clustertest

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/nodeagent"
)

// TestInviteAndSignupForms: users add and reset print the invite token and
// the exact signup command, with the cluster's CA pin, and no link to a
// page that does not exist; every form of signup works (the token asked
// for, from a file, the link of earlier versions), and a proxy whose CA
// does not match the pin gets nothing.
func TestInviteAndSignupForms(t *testing.T) {
	c := New(t, Options{NoNode: true})
	admin := t.TempDir()
	ping, err := c.Admin.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("printed command with the token asked for", func(t *testing.T) {
		r := c.Warden(admin, nil, "users", "add", "ann", "--roles", "access")
		if r.Code != 0 {
			t.Fatalf("users add: %s", r)
		}
		token, args := parseInvite(t, r.Stdout)
		if want := []string{"signup", "--proxy", c.ProxyAddr(), "--ca-pin", ping.TLSCAFingerprint}; strings.Join(args, " ") != strings.Join(want, " ") {
			t.Fatalf("printed command %v, want %v", args, want)
		}
		signupViaCLI(t, c, append(args, "--password-stdin"), token+"\n", "ann")
	})
	t.Run("reset, token from a file", func(t *testing.T) {
		r := c.Warden(admin, nil, "users", "reset", "ann")
		if r.Code != 0 {
			t.Fatalf("users reset: %s", r)
		}
		token, args := parseInvite(t, r.Stdout)
		file := filepath.Join(t.TempDir(), "invite")
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		signupViaCLI(t, c, append(args, "--token-file", file, "--password-stdin"), "", "ann")
	})
	t.Run("the link of earlier versions", func(t *testing.T) {
		r := c.Warden(admin, nil, "users", "add", "bob", "--roles", "access")
		token, _ := parseInvite(t, r.Stdout)
		signupViaCLI(t, c, []string{"signup", "https://" + c.ProxyAddr() + "/web/invite/" + token, "--password-stdin"}, "", "bob")
	})
	t.Run("wrong pin", func(t *testing.T) {
		r := c.Warden(admin, nil, "users", "add", "cy", "--roles", "access")
		token, _ := parseInvite(t, r.Stdout)
		wrong := "sha256:" + strings.Repeat("0", 64)
		r = c.Warden(t.TempDir(), strings.NewReader(token+"\n"), "signup", "--proxy", c.ProxyAddr(), "--ca-pin", wrong, "--password-stdin")
		if r.Code == 0 || !strings.Contains(r.Stderr, "not the expected "+wrong) {
			t.Fatalf("signup with a wrong pin: %s", r)
		}
	})
	t.Run("a proxy that claims the pinned fingerprint", func(t *testing.T) {
		// It hands out a CA of its own (the one its TLS certificate chains
		// to) with the real cluster's fingerprint.
		var mu sync.Mutex
		var paths []string
		var fake *httptest.Server
		fake = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
			if r.URL.Path != "/v1/ping" {
				http.Error(w, "{}", http.StatusTeapot)
				return
			}
			caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fake.Certificate().Raw})
			json.NewEncoder(w).Encode(api.PingResponse{Cluster: "test", Version: api.Version,
				TLSCAFingerprint: ping.TLSCAFingerprint, TLSCA: string(caPEM)})
		}))
		defer fake.Close()
		addr := strings.TrimPrefix(fake.URL, "https://")
		r := c.Warden(t.TempDir(), strings.NewReader("0123456789abcdef\n"), "signup", "--proxy", addr, "--ca-pin", ping.TLSCAFingerprint, "--password-stdin")
		if r.Code == 0 || !strings.Contains(r.Stderr, "refusing to trust it") {
			t.Fatalf("signup trusted the fake proxy: %s", r)
		}
		// A node joining with the pin refuses it the same way.
		_, err := nodeagent.Start(context.Background(), nodeagent.Config{DataDir: t.TempDir(), Logger: quietLogger(t),
			Settings: nodeagent.Settings{Name: "n1", ProxyAddr: addr, Token: "0123456789abcdef", CAPin: ping.TLSCAFingerprint}})
		if err == nil || !strings.Contains(err.Error(), "refusing to trust it") {
			t.Fatalf("node joined the fake proxy: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range paths {
			if p != "/v1/ping" {
				t.Fatalf("the fake proxy received %s (the token): %v", p, paths)
			}
		}
	})
}
