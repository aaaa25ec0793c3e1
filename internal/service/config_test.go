package service

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/nodeagent"
)

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text, err string
		want            Config
	}{
		{name: "empty", text: ""},
		{name: "comments only", text: "# all defaults\n"},
		{name: "fields", text: "cluster_name: example\nnode:\n  name: web1\n", want: Config{ClusterName: "example", Node: nodeagent.Settings{Name: "web1"}}},
		{name: "unknown field", text: "clustr_name: example\n", err: "field clustr_name not found"},
		{name: "not yaml", text: "cluster_name: [\n", err: "config "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "warden.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error with %q", err, tc.err)
			case tc.err == "" && (c.ClusterName != tc.want.ClusterName || c.Node.Name != tc.want.Node.Name):
				t.Fatalf("got cluster %q node %q, want %q %q", c.ClusterName, c.Node.Name, tc.want.ClusterName, tc.want.Node.Name)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

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

func TestRetentionAndCheckpointSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		events   int
		recs     int
		interval time.Duration
		err      string
	}{
		{"forever", 0, 0, 0, ""},
		{"recordings shorter", 365, 90, 0, ""},
		{"equal", 90, 90, time.Hour, ""},
		{"recordings longer", 30, 90, 0, "must not outlive audit events"},
		{"recordings forever", 30, 0, 0, "must not outlive audit events"},
		{"negative interval", 0, 0, -time.Minute, "checkpoint_interval must be positive"},
	} {
		c := &Config{DataDir: t.TempDir()}
		c.Auth.Retention = RetentionConfig{EventsDays: tc.events, RecordingsDays: tc.recs}
		c.Auth.CheckpointInterval = tc.interval
		err := c.CheckAndSetDefaults()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s refused: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.err)
		case err == nil && c.Auth.AuditSigningKey != filepath.Join(c.DataDir, "audit-signing-key.pem"):
			t.Errorf("%s: signing key path %q", tc.name, c.Auth.AuditSigningKey)
		}
	}
}

func TestAuditSigningKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit.pem")
	k1, err := loadOrCreateAuditKey(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v", st, err)
	}
	k2, err := loadOrCreateAuditKey(path, quiet)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateAuditKey(path, quiet); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
}

func TestMetricsAddrSetting(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "", want: DefaultMetricsAddr},
		{in: "off", want: "off"},
		{in: "0.0.0.0:9100", want: "0.0.0.0:9100"},
		{in: "9100", err: "metrics_addr"},
	} {
		c := Config{DataDir: t.TempDir(), Proxy: ProxyConfig{MetricsAddr: tc.in}}
		err := c.CheckAndSetDefaults()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("metrics_addr %q: got %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || c.Proxy.MetricsAddr != tc.want {
			t.Errorf("metrics_addr %q: got %q, %v; want %q", tc.in, c.Proxy.MetricsAddr, err, tc.want)
		}
	}
	// Never on the public port by default.
	if DefaultMetricsAddr == DefaultProxyListen {
		t.Fatal("metrics default to the public port")
	}
}

func TestPeerSettings(t *testing.T) {
	for _, tc := range []struct{ listen, addr, want, err string }{
		{},
		{listen: "10.0.0.1:3082", want: "10.0.0.1:3082"},
		{listen: "0.0.0.0:3082", addr: "proxy1.example.com:3082", want: "proxy1.example.com:3082"},
		{listen: "0.0.0.0:3082", err: "set peer_addr"},
		{listen: ":3082", err: "set peer_addr"},
		{listen: "3082", err: "peer_addr"},
	} {
		c := Config{DataDir: t.TempDir(), Proxy: ProxyConfig{PeerListen: tc.listen, PeerAddr: tc.addr}}
		err := c.CheckAndSetDefaults()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("peer_listen %q: got %v, want an error with %q", tc.listen, err, tc.err)
			}
			continue
		}
		if err != nil || c.Proxy.PeerAddr != tc.want {
			t.Errorf("peer_listen %q peer_addr %q: got %q, %v; want %q", tc.listen, tc.addr, c.Proxy.PeerAddr, err, tc.want)
		}
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
