//go:build integration

package clustertest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// TestAuditTamperEvidence: altering one stored event makes `warden audit
// verify` fail and name it; tail -f streams new events; the sink file gets
// every event.
func TestAuditTamperEvidence(t *testing.T) {
	dir := t.TempDir()
	sinkFile := filepath.Join(t.TempDir(), "siem.jsonl")
	c := New(t, Options{NoNode: true, DataDir: dir, Auth: service.AuthConfig{AuditSink: service.AuditSinkConfig{File: sinkFile}}})
	admin := t.TempDir()

	// An event before the tails start.
	if r := c.Warden(admin, nil, "tokens", "add", "--type", "node"); r.Code != 0 {
		t.Fatalf("tokens add: %s", r)
	}
	// tail -f sees events as they happen: from the last one now in the
	// log, however late it starts following.
	existing, err := c.Admin.SearchAudit(context.Background(), audit.Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	last := "0" // an empty log: from its start
	if len(existing) > 0 {
		last = strconv.FormatInt(existing[len(existing)-1].Seq, 10)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var tailOut syncbuf.Buffer
	tailDone := make(chan int)
	go func() {
		tailDone <- cli.RunIO(ctx, []string{"--data-dir", dir, "--home", admin, "audit", "tail", "-f", "--after", last, "-o", "json"},
			&cli.IO{In: strings.NewReader(""), Out: &tailOut, Err: os.Stderr})
	}()
	// tail -f -n 0 shows nothing old: it follows from the end of the log.
	var tail0Out syncbuf.Buffer
	tail0Done := make(chan int)
	go func() {
		tail0Done <- cli.RunIO(ctx, []string{"--data-dir", dir, "--home", admin, "audit", "tail", "-f", "-n", "0", "-o", "json"},
			&cli.IO{In: strings.NewReader(""), Out: &tail0Out, Err: os.Stderr})
	}()
	for _, name := range []string{"u1", "u2", "u3"} {
		if r := c.Warden(admin, nil, "users", "add", name, "--roles", "access", "--logins", "x"+name); r.Code != 0 {
			t.Fatalf("users add: %s", r)
		}
	}
	testkit.WaitFor(t, "three user.create events from tail -f", func() bool {
		return strings.Count(tailOut.String(), `"event":"user.create"`) == 3
	})
	testkit.WaitFor(t, "u3's user.create from tail -f -n 0", func() bool { return strings.Contains(tail0Out.String(), `"xu3"`) })
	cancel()
	<-tailDone
	<-tail0Done
	for line := range strings.Lines(tail0Out.String()) {
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("tail -f -n 0: %v: %q", err, line)
		}
		if before, _ := strconv.ParseInt(last, 10, 64); before == 0 || ev.Seq <= before {
			t.Fatalf("tail -f -n 0 showed event %d, from before it started (the log ended at %s)", ev.Seq, last)
		}
	}
	if last != "0" && strings.Contains(tailOut.String(), `"seq":`+last+`,`) {
		t.Fatalf("tail -f --after %s showed event %s again: %s", last, last, tailOut.String())
	}

	if r := c.Warden(admin, nil, "audit", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "intact") {
		t.Fatalf("verify on an intact log: %s", r)
	}
	if r := c.Warden(admin, nil, "audit", "search", "--text", "xu2", "-o", "json"); strings.Count(r.Stdout, "\n") != 1 {
		t.Fatalf("free-text search: %s", r)
	}
	// Paging: a page cut at --limit says where the next one starts, and
	// that page goes on from there.
	r := c.Warden(admin, nil, "audit", "search", "--type", "user.create", "--limit", "2", "-o", "json")
	var page []audit.Event
	for line := range strings.Lines(r.Stdout) {
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("search -o json: %v: %s", err, r)
		}
		page = append(page, ev)
	}
	if len(page) != 2 || !strings.Contains(r.Stderr, fmt.Sprintf("repeat with --after %d", page[1].Seq)) {
		t.Fatalf("first page of 2: %s", r)
	}
	r = c.Warden(admin, nil, "audit", "search", "--type", "user.create", "--limit", "2", "--after", strconv.FormatInt(page[1].Seq, 10))
	if !strings.Contains(r.Stdout, "xu3") || strings.Contains(r.Stdout, "xu1") || strings.Contains(r.Stderr, "--after") {
		t.Fatalf("second page: %s", r)
	}
	if r := c.Warden(admin, nil, "audit", "search", "--type", "no.such.event"); r.Code != 0 || !strings.Contains(r.Stderr, "no matching events") {
		t.Fatalf("search without a match: %s", r)
	}
	// The sink file has every user.create, as JSON lines.
	testkit.WaitFor(t, "three user.create events in the sink file", func() bool {
		b, _ := os.ReadFile(sinkFile)
		return strings.Count(string(b), `"event":"user.create"`) == 3
	})

	// Find u2's event and alter it directly in the database.
	var target audit.Event
	evs, err := c.Admin.SearchAudit(context.Background(), audit.Query{Type: audit.UserCreate})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Fields["target_user"] == "u2" {
			target = ev
		}
	}
	c.Proc.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	var body string
	if err := db.QueryRow(`SELECT body FROM audit_events WHERE seq = ?`, target.Seq).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	m["fields"].(map[string]any)["roles"] = []string{"admin"} // cover up a privilege grant
	altered, _ := json.Marshal(m)
	if _, err := db.Exec(`UPDATE audit_events SET body = ? WHERE seq = ?`, string(altered), target.Seq); err != nil {
		t.Fatal(err)
	}
	db.Close()

	c2 := New(t, Options{NoNode: true, DataDir: dir})
	r = c2.Warden(admin, nil, "audit", "verify")
	if r.Code == 0 || !strings.Contains(r.Stdout, "TAMPERED") || !strings.Contains(r.Stdout, target.ID) {
		t.Fatalf("verify did not name the altered event %d/%s: %s", target.Seq, target.ID, r)
	}
}
