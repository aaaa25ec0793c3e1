package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// addBot adds bot name (roles access, login deploy) and returns its join
// token; the clock moves on so certificates come after the bot.
func (f *fixture) addBot(name string, roles ...string) string {
	f.t.Helper()
	if len(roles) == 0 {
		roles = []string{"access"}
	}
	res, err := f.a.CreateBot(context.Background(), auth.AdminCaller(), wire.CreateBotRequest{Name: name, Roles: roles, Logins: []string{"deploy"}, TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	return res.Token.Token
}

// caller is the caller the API makes of certs' TLS certificate: decoded,
// then checked against the current state (CurrentCaller).
func (f *fixture) caller(certs wire.Certs) (auth.Caller, error) {
	f.t.Helper()
	block, _ := pem.Decode([]byte(certs.TLSCert))
	if block == nil {
		f.t.Fatal("no TLS certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := auth.CallerFromTLS(leaf)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.a.CurrentCaller(context.Background(), c, "test", "192.0.2.1")
}

// renew renews the identity certs with a new key, as the API does.
func (f *fixture) renew(certs wire.Certs, remote string) (*wire.BotCerts, error) {
	c, err := f.caller(certs)
	if err != nil {
		return nil, err
	}
	return f.a.RenewBotCerts(context.Background(), c, wire.BotCertsRequest{PublicKey: pubKey(f.t), RemoteAddr: remote})
}

func (f *fixture) joinBot(token string) *wire.BotCerts {
	f.t.Helper()
	res, err := f.a.JoinBot(context.Background(), wire.BotJoinRequest{Token: token, PublicKey: pubKey(f.t), RemoteAddr: "192.0.2.1"})
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func TestBotJoinTokenIsSingleUseAndExpires(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.addBot("deploy")
	got := f.joinBot(tok)
	if got.User != "bot-deploy" || got.Generation != 1 || got.Instance == "" || !strings.Contains(got.SSHCert, "cert") {
		t.Fatalf("join: %+v", got)
	}
	sshCert := parseSSHCert(t, got.SSHCert)
	if sshCert.Extensions["bot-generation@warden.dev"] != "1" || !strings.Contains(sshCert.Extensions["bot-instance@warden.dev"], got.Instance) {
		t.Errorf("the SSH certificate's extensions: %v", sshCert.Extensions)
	}
	// Reused.
	_, err := f.a.JoinBot(ctx, wire.BotJoinRequest{Token: tok, PublicKey: pubKey(t), RemoteAddr: "192.0.2.2"})
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("second join with one token: %v", err)
	}
	// Expired.
	res, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "bot", Bot: "deploy", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Minute)
	_, err = f.a.JoinBot(ctx, wire.BotJoinRequest{Token: res.Token, PublicKey: pubKey(t), RemoteAddr: "192.0.2.2"})
	if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("join with an expired token: %v", err)
	}
	// A node's token joins no bot, a bot's no node.
	nodeTok, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "node", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.JoinBot(ctx, wire.BotJoinRequest{Token: nodeTok.Token, PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("bot join with a node token: %v", err)
	}
	botTok, err := f.a.CreateToken(ctx, auth.AdminCaller(), wire.CreateTokenRequest{Type: "bot", Bot: "deploy", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.JoinNode(ctx, auth.JoinRequest{Token: botTok.Token, Name: "n", Hostname: "n", PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("node join with a bot token: %v", err)
	}
	// Each refused join is audited.
	if evs := f.events(audit.Query{Type: audit.BotJoin}); len(evs) < 3 {
		t.Errorf("bot.join events: %d", len(evs))
	}
}

func parseSSHCert(t *testing.T, text string) *ssh.Certificate {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ssh.Certificate)
}

// TestBotGenerationReplayLocksTheBot: a renewal advances the generation;
// the older certificate renewing afterwards (a copy) locks the bot, is
// audited with both sources, and the newer one is refused too.
func TestBotGenerationReplayLocksTheBot(t *testing.T) {
	f := newFixture(t)
	gen1 := f.joinBot(f.addBot("deploy"))
	f.clock.Advance(time.Second)
	gen2, err := f.renew(gen1.Certs, "198.51.100.7")
	if err != nil || gen2.Generation != 2 || gen2.Instance != gen1.Instance {
		t.Fatalf("renewal: %+v, %v", gen2, err)
	}
	f.clock.Advance(time.Second)
	_, err = f.renew(gen1.Certs, "203.0.113.9")
	if !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "older") {
		t.Fatalf("the older generation renewing: %v", err)
	}
	evs := f.events(audit.Query{Type: audit.BotGenerationMismatch})
	if len(evs) != 1 {
		t.Fatalf("bot.generation_mismatch events: %+v", evs)
	}
	ev := evs[0]
	if ev.User != "bot-deploy" || ev.RemoteAddr != "203.0.113.9" || ev.Fields["current_remote_addr"] != "198.51.100.7" ||
		fmt.Sprint(ev.Fields["presented_generation"]) != "1" || fmt.Sprint(ev.Fields["current_generation"]) != "2" {
		t.Errorf("mismatch event: %+v", ev)
	}
	// Both are refused now: the bot is locked.
	if _, err := f.renew(gen2.Certs, "198.51.100.7"); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("the newer generation after the mismatch: %v", err)
	}
	if err := f.a.CheckLock(lock.Subject{User: "bot-deploy"}); err == nil {
		t.Error("the bot is not locked")
	}
}

// TestBotConcurrentRenewalsOneWins: two renewals at once with one
// certificate cannot both succeed.
func TestBotConcurrentRenewalsOneWins(t *testing.T) {
	f := newFixture(t)
	gen1 := f.joinBot(f.addBot("deploy"))
	f.clock.Advance(time.Second)
	c, err := f.caller(gen1.Certs)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.a.RenewBotCerts(context.Background(), c, wire.BotCertsRequest{PublicKey: pubKey(t), RemoteAddr: "192.0.2.1"})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of %d concurrent renewals with one certificate succeeded, want 1", wins, n)
	}
	if err := f.a.CheckLock(lock.Subject{User: "bot-deploy"}); err == nil {
		t.Error("the bot is not locked after concurrent renewals with one identity")
	}
}

func TestBotRemovedOrLockedCannotRenew(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	removed := f.joinBot(f.addBot("gone"))
	locked := f.joinBot(f.addBot("held"))
	f.clock.Advance(time.Second)
	if err := f.a.DeleteBot(ctx, auth.AdminCaller(), "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.renew(removed.Certs, ""); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a removed bot renewing: %v", err)
	}
	// Past the removal's lock too (its user record and instances are gone).
	c, _ := auth.CallerFromTLS(leafOf(t, removed.TLSCert))
	if _, err := f.a.RenewBotCerts(ctx, c, wire.BotCertsRequest{PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a removed bot renewing, without CurrentCaller: %v", err)
	}
	if _, err := f.a.CreateLock(ctx, auth.AdminCaller(), wire.CreateLockRequest{Target: lock.Target{User: "bot-held"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.renew(locked.Certs, ""); !errors.Is(err, auth.ErrAccessDenied) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("a locked bot renewing: %v", err)
	}
	c, _ = auth.CallerFromTLS(leafOf(t, locked.TLSCert))
	if _, err := f.a.RenewBotCerts(ctx, c, wire.BotCertsRequest{PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a locked bot renewing, without CurrentCaller: %v", err)
	}
	if _, err := f.a.JoinBot(ctx, wire.BotJoinRequest{Token: f.botToken("held"), PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a locked bot joining: %v", err)
	}
}

func (f *fixture) botToken(bot string) string {
	f.t.Helper()
	res, err := f.a.CreateToken(context.Background(), auth.AdminCaller(), wire.CreateTokenRequest{Type: "bot", Bot: bot})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.Token
}

func leafOf(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestBotOutputs: an output's certificates take some of the bot's roles,
// never another; they carry no generation and cannot renew or make more.
func TestBotOutputs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.joinBot(f.addBot("deploy", "access", "auditor"))
	f.clock.Advance(time.Second)
	c, err := f.caller(id.Certs)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.a.BotOutputCerts(ctx, c, wire.BotCertsRequest{PublicKey: pubKey(t), Roles: []string{"auditor"}})
	if err != nil || out.Generation != 0 || len(out.Roles) != 1 || out.Roles[0] != "auditor" {
		t.Fatalf("output for auditor: %+v, %v", out, err)
	}
	if _, ok := parseSSHCert(t, out.SSHCert).Extensions["bot-generation@warden.dev"]; ok {
		t.Error("an output's SSH certificate carries a generation")
	}
	if _, err := f.a.BotOutputCerts(ctx, c, wire.BotCertsRequest{PublicKey: pubKey(t), Roles: []string{"admin"}}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("an output with a role the bot lacks: %v", err)
	}
	oc, err := f.caller(out.Certs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.RenewBotCerts(ctx, oc, wire.BotCertsRequest{PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("an output's certificate renewing: %v", err)
	}
	if _, err := f.a.BotOutputCerts(ctx, oc, wire.BotCertsRequest{PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("an output's certificate making more: %v", err)
	}
	// A person is no bot.
	f.signup("dev", []string{"access"}, []string{"dev"})
	dev := auth.Caller{Kind: auth.KindUser, User: "dev", Roles: []string{"access"}}
	if _, err := f.a.RenewBotCerts(ctx, dev, wire.BotCertsRequest{PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a person renewing as a bot: %v", err)
	}
	// Not a bot's: the output expires with the identity.
	if out.Expires.After(id.Expires) {
		t.Errorf("output expires %s, after the identity (%s)", out.Expires, id.Expires)
	}
}

// TestBotsAreNotPeople: no password, no reset, no person in the bots'
// name space, no access requests unless a role allows bots to.
func TestBotsAreNotPeople(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.joinBot(f.addBot("deploy"))
	if _, err := f.a.CreateUser(ctx, auth.AdminCaller(), auth.CreateUserRequest{Name: "bot-evil", Roles: []string{"access"}}); !errors.Is(err, auth.ErrBadRequest) {
		t.Errorf("a person named bot-evil: %v", err)
	}
	if _, err := f.a.ResetUser(ctx, auth.AdminCaller(), "bot-deploy"); !errors.Is(err, auth.ErrBadRequest) {
		t.Errorf("resetting a bot (an invite would give it a password): %v", err)
	}
	if _, err := f.a.Login(ctx, auth.LoginRequest{User: "bot-deploy", Password: "anything at all", OTP: "000000", PublicKey: pubKey(t)}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("a password login as a bot: %v", err)
	}
	// Access requests: a role that may request prod, and then one that
	// lets bots request.
	roles, err := policy.ParseRoles([]byte(`
kind: role
metadata: {name: requester}
spec:
  allow:
    request: {roles: [auditor]}
---
kind: role
metadata: {name: bot-requests}
spec:
  allow:
    request: {roles: [auditor]}
    rules: [{resources: [access_request], verbs: [create]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		if err := f.a.UpsertRole(ctx, auth.AdminCaller(), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.a.UpdateUser(ctx, auth.AdminCaller(), "bot-deploy", auth.UpdateUserRequest{Roles: []string{"access", "requester"}}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	c := auth.Caller{Kind: auth.KindUser, User: "bot-deploy", Roles: []string{"access", "requester"}}
	if _, err := f.a.CreateAccessRequest(ctx, c, auth.CreateAccessRequest{Roles: []string{"auditor"}, Reason: "ci"}); !errors.Is(err, auth.ErrAccessDenied) {
		t.Errorf("a bot requesting access without a role allowing it: %v", err)
	}
	if _, err := f.a.UpdateUser(ctx, auth.AdminCaller(), "bot-deploy", auth.UpdateUserRequest{Roles: []string{"access", "bot-requests"}}); err != nil {
		t.Fatal(err)
	}
	c.Roles = []string{"access", "bot-requests"}
	if _, err := f.a.CreateAccessRequest(ctx, c, auth.CreateAccessRequest{Roles: []string{"auditor"}, Reason: "ci"}); err != nil {
		t.Errorf("a bot requesting access with a role allowing it: %v", err)
	}
	_ = id
	bots, err := f.a.ListBots(ctx, auth.AdminCaller())
	if err != nil || len(bots) != 1 || bots[0].User != "bot-deploy" || len(bots[0].Instances) != 1 {
		t.Errorf("bots: %+v, %v", bots, err)
	}
	if err := f.a.DeleteBot(ctx, auth.AdminCaller(), "deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Get(ctx, "/users/bot-deploy"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the removed bot's user record: %v", err)
	}
}
