//go:build integration

package clustertest

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHTTPSHardening: every HTTPS response carries the security headers,
// TLS 1.2 offers only forward-secret AEAD suites, oversized bodies answer
// 413, and metrics stay off the public port.
func TestHTTPSHardening(t *testing.T) {
	c := New(t, Options{NoNode: true})
	base := "https://" + c.ProxyAddr()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	defer hc.CloseIdleConnections()

	t.Run("security headers", func(t *testing.T) {
		want := map[string]string{
			"Strict-Transport-Security": "max-age=31536000",
			"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Referrer-Policy":           "no-referrer",
		}
		for _, req := range []struct{ method, path string }{
			{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/v1/ping"}, {"GET", "/v1/users"}, // 401
			{"GET", "/nope"}, {"GET", "/metrics"}, {"POST", "/v1/login"}, // 404, 404, 400
		} {
			r, err := http.NewRequest(req.method, base+req.path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s (%s): %s = %q, want %q", req.method, req.path, resp.Status, k, got, v)
				}
			}
		}
	})

	t.Run("oversized body is 413", func(t *testing.T) {
		body := append([]byte(`{"user":"`), bytes.Repeat([]byte("a"), 3<<20)...)
		body = append(body, `"}`...)
		resp, err := hc.Post(base+"/v1/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "larger than") {
			t.Fatalf("3 MiB login body: %s %s", resp.Status, msg)
		}
		// A malformed body of normal size stays a 400.
		resp, err = hc.Post(base+"/v1/login", "application/json", strings.NewReader("{"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed body: %s", resp.Status)
		}
	})

	t.Run("TLS 1.2 suites are ECDHE with AEAD only", func(t *testing.T) {
		aead := []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		}
		var accepted []string
		// Every TLS 1.2 suite Go knows, secure and insecure, one at a time.
		for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
			if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
				continue
			}
			conn, err := tls.Dial("tcp", c.ProxyAddr(), &tls.Config{InsecureSkipVerify: true,
				MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cs.ID}})
			if err != nil {
				continue
			}
			conn.Close()
			accepted = append(accepted, cs.Name)
			if !slices.Contains(aead, cs.ID) {
				t.Errorf("TLS 1.2 suite %s accepted", cs.Name)
			}
		}
		if len(accepted) == 0 {
			t.Fatal("no TLS 1.2 suite accepted")
		}
		t.Logf("TLS 1.2 suites accepted: %v", accepted)
		// TLS 1.3 as Go has it.
		conn, err := tls.Dial("tcp", c.ProxyAddr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatalf("TLS 1.3: %v", err)
		}
		conn.Close()
	})

	t.Run("metrics on the local listener only", func(t *testing.T) {
		resp, err := hc.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("/metrics on the public port: %s", resp.Status)
		}
		resp, err = http.Get(c.MetricsURL())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "warden_proxy_tunnels_connected") {
			t.Fatalf("%s: %s\n%.500s", c.MetricsURL(), resp.Status, body)
		}
	})

	t.Run("metrics off", func(t *testing.T) {
		off := New(t, Options{NoNode: true, Proxy: serviceProxyMetrics("off")})
		if a := off.Proc.MetricsAddr(); a != "" {
			t.Fatalf("metrics served on %s with metrics_addr: off", a)
		}
	})
}
