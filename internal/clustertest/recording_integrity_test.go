//go:build integration

package clustertest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/idfile"
	"github.com/warden-sh/warden/internal/recording"
)

// TestRecordingTamperingDetected: bytes changed in a stored recording
// (same length) make export, play and search fail naming the session, and
// verify reports it; a recording whose file is gone is a 404 naming the
// session and is reported missing.
func TestRecordingTamperingDetected(t *testing.T) {
	requireOpenSSH(t)
	EnsureOSUser(t, osLogin)
	c := New(t, Options{NodeName: "web1"})
	c.ApplyRoles(recordInputRole)
	u := c.AddUser("dev", []string{"recorded"}, []string{osLogin})
	home := c.Login(u)
	cfg := c.SSHConfig(home)
	script := "echo secret-$((6*7))-output\nexit\n"
	if r := Run(t, strings.NewReader(script), "ssh", sshArgs(cfg, "-tt", osLogin+"@web1")...); r.Code != 0 {
		t.Fatalf("ssh -tt: %s", r)
	}
	in := c.waitRecording(t, func(in recording.Info) bool { return in.Complete && in.User == "dev" })
	admin := t.TempDir()
	id := in.SessionID
	// Intact: everything reads, and verify says so.
	if r := c.Warden(admin, nil, "recordings", "export", id); r.Code != 0 || !strings.Contains(r.Stdout, "secret-42-output") {
		t.Fatalf("export of an intact recording: %s", r)
	}
	if r := c.Warden(admin, nil, "recordings", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "1 intact, 0 altered") {
		t.Fatalf("recordings verify of an intact recording: %s", r)
	}

	// Someone with the disk edits the output, keeping the length.
	cast := filepath.Join(c.DataDir, "recordings", id+".cast")
	data, err := os.ReadFile(cast)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("secret-42-output")) {
		t.Fatalf("recording lacks the output: %q", data)
	}
	edited := bytes.ReplaceAll(data, []byte("secret-42-output"), []byte("benign-42-output"))
	if err := os.WriteFile(cast, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	named := "session " + id + " was altered"
	if r := c.Warden(admin, nil, "recordings", "export", id); r.Code == 0 || !strings.Contains(r.Stderr, named) {
		t.Fatalf("export of an edited recording: %s", r)
	}
	if r := c.Warden(admin, nil, "play", id, "--speed", "50"); r.Code == 0 || !strings.Contains(r.Stderr, named) {
		t.Fatalf("play of an edited recording: %s", r)
	}
	if r := c.Warden(admin, nil, "recordings", "search", "output"); r.Code == 0 || !strings.Contains(r.Stderr, named) {
		t.Fatalf("search over an edited recording: %s", r)
	}
	if r := c.Warden(admin, nil, "recordings", "verify"); r.Code != 2 || !strings.Contains(r.Stdout, "RECORDING ALTERED") ||
		!strings.Contains(r.Stdout, id) {
		t.Fatalf("recordings verify of an edited recording: %s", r)
	}
	if r := c.Warden(admin, nil, "audit", "verify"); r.Code != 2 || !strings.Contains(r.Stdout, "audit log intact") ||
		!strings.Contains(r.Stdout, "RECORDING ALTERED") {
		t.Fatalf("audit verify with an edited recording: %s", r)
	}
	// The API client sees the failure at the end of the stream too.
	rc, err := c.Admin.OpenRecording(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var ae *recording.AlteredError
	if _, err := readAllErr(rc); !errors.As(err, &ae) || ae.SessionID != id {
		t.Fatalf("reading an edited recording through the API: %v", err)
	}
	rc.Close()
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.RecordingAltered, SessionID: id})
	if err != nil || len(evs) == 0 {
		t.Fatalf("recording.altered events: %v, %v", evs, err)
	}

	// The file is removed: 404 naming the session; verify says missing.
	if err := os.Remove(cast); err != nil {
		t.Fatal(err)
	}
	_, err = c.Admin.OpenRecording(context.Background(), id)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || !strings.Contains(apiErr.Message, id) {
		t.Fatalf("open of a recording without its file: %v", err)
	}
	if r := c.Warden(admin, nil, "recordings", "verify", id); r.Code != 2 || !strings.Contains(r.Stdout, "RECORDING MISSING") {
		t.Fatalf("recordings verify of a recording without its file: %s", r)
	}
	// Its state too: the audit log still knows it completed.
	if err := os.Remove(filepath.Join(c.DataDir, "recordings", id+".json")); err != nil {
		t.Fatal(err)
	}
	if r := c.Warden(admin, nil, "recordings", "verify"); r.Code != 2 || !strings.Contains(r.Stdout, "RECORDING MISSING") ||
		!strings.Contains(r.Stdout, "not deleted by retention") {
		t.Fatalf("recordings verify of a recording removed entirely: %s", r)
	}
}

func readAllErr(r interface{ Read([]byte) (int, error) }) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// rogueNode joins a node through the API and returns a client with its
// identity, to make the calls a node can make, and its id.
func rogueNode(t *testing.T, c *Cluster, name string) (*api.Client, string) {
	t.Helper()
	ctx := context.Background()
	tok, err := c.Admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, priv, err := idfile.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Admin.JoinNode(ctx, auth.JoinRequest{Token: tok.Token, Name: name, Hostname: name,
		PublicKey: string(ssh.MarshalAuthorizedKey(sshPub))})
	if err != nil {
		t.Fatal(err)
	}
	id := &idfile.File{Kind: "node", NodeID: resp.NodeID, NodeName: name, PrivateKey: keyPEM,
		SSHCert: resp.SSHCert, TLSCert: resp.TLSCert, TLSCA: resp.TLSCA}
	nc := nodeClient(t, c, id)
	return nc, resp.NodeID
}

// TestRecordingUploadRefusals: a node cannot upload a recording for a
// session it never started (403, audited); appending to a complete
// recording is a 409 with the reason.
func TestRecordingUploadRefusals(t *testing.T) {
	c := New(t, Options{NoNode: true})
	ctx := context.Background()
	node, nodeID := rogueNode(t, c, "rogue1")
	other, _ := rogueNode(t, c, "rogue2")
	header := []byte(`{"version":2,"width":80,"height":24}` + "\n")

	// A session that never existed, claimed to be alice's.
	ghost := recording.Meta{SessionID: "ghost-session-1", User: "alice", Login: "root"}
	_, err := node.AppendRecording(ctx, ghost, 0, header)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !errors.Is(err, recording.ErrUnknownSession) ||
		!strings.Contains(apiErr.Message, "ghost-session-1") {
		t.Fatalf("upload for a session that never existed: %v", err)
	}
	if list, err := c.Admin.ListRecordings(ctx, "", "", time.Time{}); err != nil || len(list) != 0 {
		t.Fatalf("recordings after the refused upload: %+v, %v", list, err)
	}
	refused, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.RecordingRefused, SessionID: "ghost-session-1"})
	if err != nil || len(refused) != 1 || refused[0].Success || refused[0].Fields["node_id"] != nodeID {
		t.Fatalf("recording.refused events: %+v, %v", refused, err)
	}

	// A session this node started: accepted, and owned by what auth
	// recorded, not by what the upload claims.
	start := audit.Event{Event: audit.SessionStart, SessionID: "real-session-1", User: "bob", Login: "bob", Success: true,
		Time: time.Now().UTC().Truncate(time.Second), Fields: map[string]any{"kind": "shell", "tty": true}}
	if err := node.EmitEvents(ctx, []audit.Event{start}); err != nil {
		t.Fatal(err)
	}
	claim := recording.Meta{SessionID: "real-session-1", User: "alice", Login: "root"}
	// Another node may not upload it.
	if _, err := other.AppendRecording(ctx, claim, 0, header); !errors.Is(err, recording.ErrUnknownSession) {
		t.Fatalf("upload by a node that did not start the session: %v", err)
	}
	if _, err := node.AppendRecording(ctx, claim, 0, header); err != nil {
		t.Fatal(err)
	}
	// Auth stamps a node's events with its own receive time: the
	// recording's start is that time, as recorded in the log.
	starts, err := c.Admin.SearchAudit(ctx, audit.Query{Type: audit.SessionStart, SessionID: "real-session-1"})
	if err != nil || len(starts) != 1 {
		t.Fatalf("session.start events: %+v, %v", starts, err)
	}
	list, err := c.Admin.ListRecordings(ctx, "", "", time.Time{})
	if err != nil || len(list) != 1 || list[0].User != "bob" || list[0].Login != "bob" || !list[0].Start.Equal(starts[0].Time) {
		t.Fatalf("recordings: %+v, %v (session.start at %v)", list, err, starts[0].Time)
	}
	sum := sha256Hex(header)
	if err := node.CompleteRecording(ctx, "real-session-1", int64(len(header)), sum, false); err != nil {
		t.Fatal(err)
	}
	// Appending to the complete recording: 409 with the reason.
	_, err = node.AppendRecording(ctx, claim, int64(len(header)), []byte(`[0.1,"o","more"]`+"\n"))
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !errors.Is(err, recording.ErrCompleted) ||
		!strings.Contains(apiErr.Message, "real-session-1") {
		t.Fatalf("append to a complete recording: %v", err)
	}
}
