//go:build integration

package clustertest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/agentid"
	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/syncbuf"
	"github.com/warden-sh/warden/internal/testkit"
)

// wardenProc is a `warden start` subprocess (auth and proxy) on shared
// storage.
type wardenProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	out  *syncbuf.Buffer
	addr string
	data string
}

func startWardenProc(t *testing.T, name string, st service.StorageConfig, signingKey string) *wardenProc {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := fmt.Sprintf("storage:\n  type: postgres\n  conn: %q\n  password_file: %q\n  recordings_dir: %q\n"+
		"auth:\n  audit_signing_key: %q\n  checkpoint_interval: 200ms\n",
		st.Conn, st.PasswordFile, filepath.Join(filepath.Dir(signingKey), "recordings"), signingKey)
	cfgPath := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &wardenProc{out: &syncbuf.Buffer{}, addr: "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), data: data}
	p.cmd = exec.Command(WardenBinary, "start", "--config", cfgPath, "--data-dir", data, "--proxy-listen", p.addr,
		"--name", name, "--services", "auth,proxy", "--metrics-addr", "off")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() {
		p.cmd.Wait() //nolint:errcheck // killed, or failed: its output says
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("warden %s output (last 4 KiB):\n%s", name, lastBytes(p.out.String(), 4096))
		}
	})
	testkit.WaitFor(t, "warden "+name+" to answer", func() bool {
		select {
		case <-p.done:
			t.Fatalf("warden %s exited:\n%s", name, p.out.String())
		default:
		}
		c, err := api.NewClient(api.ClientConfig{Addr: p.addr, Insecure: true})
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Ping(context.Background())
		return err == nil
	})
	return p
}

// kill sends SIGKILL to the process (its group: it has no children of
// its own here, but nothing may outlive it) and reaps it.
func (p *wardenProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // may be gone
	<-p.done
}

// stringer shows a state when a wait fails.
type stringer func() string

func (s stringer) String() string { return s() }

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// loadNode is a joined node identity that sends its journal's events in
// batches with ids and renews its certificates, through one instance and,
// when that fails, through the other: what a node behind a load balancer
// does when its proxy dies.
type loadNode struct {
	id      string
	clients []*api.Client // one per instance
	pub     string
}

// TestKillOneInstanceUnderLoad: two `warden start` processes (auth and
// proxy) on one PostgreSQL database; 8 nodes send audit events (batches
// with ids, as a node's journal does) and renew their certificates through
// both. One instance is killed (SIGKILL) under that load: every node moves
// to the other and resends what was not acknowledged, the survivor goes on
// serving (events and renewals), no event acknowledged to a node is lost,
// none is in the chain twice, and `warden audit verify` through the
// survivor finds the chain intact.
func TestKillOneInstanceUnderLoad(t *testing.T) {
	st, db := postgresStorage(t)
	signingKey := filepath.Join(t.TempDir(), "audit-signing-key.pem")
	a := startWardenProc(t, "inst-a", st, signingKey)
	b := startWardenProc(t, "inst-b", st, signingKey)

	admin, _, err := client.AdminClient(b.data, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	tok, err := admin.CreateToken(ctx, auth.CreateTokenRequest{Type: "node", TTL: time.Hour, Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	ping, err := admin.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*loadNode
	for i := range 8 {
		proxy := []*wardenProc{a, b}[i%2]
		id, err := agentid.Join(ctx, agentid.JoinRequest{ProxyAddr: proxy.addr, Token: tok.Token, CAPin: ping.TLSCAFingerprint,
			Name: fmt.Sprintf("load-%d", i), Agent: "node", Path: filepath.Join(t.TempDir(), "identity.json")})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		cert, err := id.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		pool, err := id.RootCAs()
		if err != nil {
			t.Fatal(err)
		}
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := ssh.NewPublicKey(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		n := &loadNode{id: id.NodeID, pub: string(ssh.MarshalAuthorizedKey(sp))}
		// Its own proxy first, the other one second.
		for _, p := range []*wardenProc{proxy, []*wardenProc{b, a}[i%2]} {
			c, err := api.NewClient(api.ClientConfig{Addr: p.addr, RootCAs: pool, Certificate: cert, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n.clients = append(n.clients, c)
		}
		nodes = append(nodes, n)
	}

	var (
		mu        sync.Mutex
		acked     = map[string]bool{}
		nAcked    atomic.Int64
		nRenewed  atomic.Int64
		resent    atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		lastError atomic.Value
	)
	for ni, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := 0 // which instance this node talks to
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]audit.Event, 20)
				for k := range batch {
					batch[k] = audit.Event{ID: fmt.Sprintf("n%d-%d-%d", ni, seq, k), Event: audit.Exec, User: "load",
						SessionID: "s", Success: true, Fields: map[string]any{"command": "true"}}
				}
				// The journal keeps the batch until it is acknowledged:
				// on failure it is resent, same ids, to the other instance.
				for attempt := 0; ; attempt++ {
					if attempt > 0 {
						resent.Add(1)
						cur = 1 - cur
						time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
					}
					if err := n.clients[cur].EmitEvents(ctx, batch); err != nil {
						lastError.Store(err.Error())
						continue
					}
					break
				}
				mu.Lock()
				for _, ev := range batch {
					acked[ev.ID] = true
				}
				mu.Unlock()
				nAcked.Add(int64(len(batch)))
				if seq%5 == 0 {
					if _, err := n.clients[cur].RenewNodeCerts(ctx, n.pub); err == nil {
						nRenewed.Add(1)
					}
				}
			}
		}()
	}
	progress := func(what string, n int64) {
		t.Helper()
		e, r := nAcked.Load(), nRenewed.Load()
		testkit.WaitFor(t, what+" (%s)", func() bool { return nAcked.Load() >= e+n && nRenewed.Load() >= r+4 },
			stringer(func() string {
				return fmt.Sprintf("%d events acknowledged, %d renewals, %d batches resent, last error %v",
					nAcked.Load(), nRenewed.Load(), resent.Load(), lastError.Load())
			}))
	}
	progress("events and renewals through both instances", 1000)
	start := time.Now()
	a.kill()
	t.Logf("instance A killed (SIGKILL) with %d events acknowledged", nAcked.Load())
	progress("events and renewals going on through B alone", 2000)
	t.Logf("%d events acknowledged %v after the kill; %d batches resent", nAcked.Load(), time.Since(start), resent.Load())
	close(stop)
	wg.Wait()

	// Nothing acknowledged is lost, nothing is in the chain twice: every
	// batch a node sent was in the end acknowledged (it was resent until it
	// was), so the log holds exactly the acknowledged events, each once.
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	var found, total int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE id = ANY($1)), count(*) FROM audit_events WHERE event = $2`,
		ids, audit.Exec).Scan(&found, &total); err != nil {
		t.Fatal(err)
	}
	if found != len(ids) {
		t.Fatalf("%d of %d acknowledged events are in the log: acknowledged events were lost", found, len(ids))
	}
	if total != len(ids) {
		t.Fatalf("%d node events in the log for %d sent and acknowledged: duplicates", total, len(ids))
	}
	// The survivor verifies the one chain, signed checkpoints included.
	c := &Cluster{t: t, DataDir: b.data}
	home := t.TempDir()
	var v Result
	testkit.WaitFor(t, "audit verify through the survivor", func() bool {
		v = c.Warden(home, nil, "audit", "verify")
		return v.Code == 0 && strings.Contains(v.Stdout, "intact")
	})
	t.Logf("%d events acknowledged, each once in the chain; %d renewals; audit verify: %s",
		len(ids), nRenewed.Load(), strings.TrimSpace(v.Stdout))
}
