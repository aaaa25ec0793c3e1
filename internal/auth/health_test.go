package auth_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/auth"
)

// TestClusterHealth: connected and only-registered nodes, versions, the
// CAs (the TLS CA's expiry), storage and the audit log's last signed
// checkpoint; then a rewritten log makes the checkpoint fail to verify.
func TestClusterHealth(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *auth.Config) { c.AuditKey = priv })
	ctx := context.Background()
	web := f.joinNode("web1")
	f.joinNode("db1")
	f.a.SetInventory(staticInventory{{ID: web.NodeID, Name: "web1", Version: "1.2.3", LastSeen: f.clock.Now()}})
	f.signup("dev", []string{"access"}, []string{"dev"})
	auth.Checkpoint(f.a, ctx)

	h, err := f.a.ClusterHealth(ctx, auth.AdminCaller())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Online) != 1 || h.Online[0].Name != "web1" || len(h.Offline) != 1 || h.Offline[0].Name != "db1" || h.Versions["1.2.3"] != 1 {
		t.Fatalf("nodes: online %+v offline %+v versions %v", h.Online, h.Offline, h.Versions)
	}
	if len(h.CAs) != 3 || h.CAs[2].NotAfter.IsZero() || !strings.HasPrefix(h.CAs[0].Fingerprint, "SHA256:") {
		t.Fatalf("CAs %+v", h.CAs)
	}
	if !h.Storage.OK || h.Storage.Users != 1 {
		t.Fatalf("storage %+v", h.Storage)
	}
	if !h.Audit.OK || !h.Audit.Signing || !h.Audit.CheckpointOK || h.Audit.Checkpoint.Seq == 0 || h.Audit.Last.Seq < h.Audit.Checkpoint.Seq {
		t.Fatalf("audit %+v", h.Audit)
	}

	// The owner of the database rewrites the log: the last checkpoint no
	// longer verifies, and the page says so.
	rewriteFirstEvent(t, f)
	h, err = f.a.ClusterHealth(ctx, auth.AdminCaller())
	if err != nil || h.Audit.CheckpointOK || !strings.Contains(h.Audit.CheckpointError, "rewritten") {
		t.Fatalf("after a rewrite: %+v, %v", h.Audit, err)
	}
}
