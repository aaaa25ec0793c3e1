package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Bots are machine users (identity.TypeBot, user name bot-NAME): roles and
// logins like a person's, never a password or MFA device. A bot joins with
// a single-use token (or an OIDC join token and its CI job's ID token),
// which makes a bot instance: a renewable identity whose certificates carry
// the instance and a generation. Each renewal needs the current
// generation and advances it; an older generation renewing after a newer
// one means two copies of one identity: auth locks the bot and audits
// bot.generation_mismatch. Output certificates (for the directories `warden
// bot start` keeps) carry no generation and cannot renew or make more.
const (
	prefixBots         = "/bots/"          // bot name → botRecord
	prefixBotInstances = "/bot_instances/" // bot name/instance id → botInstance; TTL: its identity's expiry
	// defaultBotTTL and minBotTTL bound a bot's certificate lifetime
	// (maxUserTTL caps it above).
	defaultBotTTL = time.Hour
	minBotTTL     = 5 * time.Second
	// defaultBotTokenTTL is the lifetime of a bot's join token.
	defaultBotTokenTTL = 30 * time.Minute
	// botInstanceLinger keeps an instance's record after its identity
	// expired, so an old copy renewing late is still recognised.
	botInstanceLinger = time.Hour
	tokenTypeBot      = "bot"
	tokenTypeOIDC     = "oidc"
)

// botRecord is what auth keeps of a bot besides its user record.
type botRecord struct {
	Name      string        `json:"name"`
	TTL       time.Duration `json:"ttl"`
	CreatedAt time.Time     `json:"created_at"`
	CreatedBy string        `json:"created_by"`
}

// botInstance is one join of a bot: the generation its identity is at.
type botInstance = wire.BotInstance

// BotInfo is wire.BotInfo: the API carries it.
type BotInfo = wire.BotInfo

// CreateBot adds a bot and returns its first join token (single use).
func (s *Server) CreateBot(ctx context.Context, c Caller, req wire.CreateBotRequest) (*wire.CreateBotResult, error) {
	if err := s.authorize(c, "CreateBot"); err != nil {
		return nil, err
	}
	if err := identity.ValidateBotName(req.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := s.checkUserRoles(ctx, req.Roles); err != nil {
		return nil, err
	}
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = defaultBotTTL
	case ttl < minBotTTL || ttl > maxUserTTL:
		return nil, badRequest("a bot's certificate TTL must be between %s and %s", minBotTTL, maxUserTTL)
	}
	traits := map[string][]string{}
	for _, l := range req.Logins {
		if err := identity.ValidateLogin(l); err != nil {
			return nil, badRequest("%v", err)
		}
		traits["logins"] = append(traits["logins"], l)
	}
	now := s.now().UTC()
	user := identity.BotUser(req.Name)
	u := identity.User{Name: user, Roles: uniq(slices.Clone(req.Roles)), Traits: traits, Status: identity.StatusActive,
		Type: identity.TypeBot, CreatedAt: now, UpdatedAt: now}
	if err := s.createJSON(ctx, prefixUsers+user, u, time.Time{}); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("bot %q (user %s) %w", req.Name, user, storage.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("store bot: %w", err)
	}
	rec := botRecord{Name: req.Name, TTL: ttl, CreatedAt: now, CreatedBy: c.Name()}
	if err := s.putJSON(ctx, prefixBots+req.Name, rec, time.Time{}); err != nil {
		return nil, fmt.Errorf("store bot: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.BotCreate, User: c.Name(), Success: true,
		Fields: map[string]any{"bot": req.Name, "target_user": user, "roles": u.Roles, "logins": traits["logins"], "ttl": ttl.String()}})
	tok, err := s.newSecretToken(ctx, c, wire.CreateTokenRequest{Type: tokenTypeBot, Bot: req.Name, TTL: req.TokenTTL})
	if err != nil {
		return nil, err
	}
	return &wire.CreateBotResult{Bot: botInfo(u, rec, nil), Token: *tok}, nil
}

func botInfo(u identity.User, rec botRecord, inst []botInstance) BotInfo {
	return BotInfo{Name: strings.TrimPrefix(u.Name, identity.BotUserPrefix), User: u.Name, Roles: u.Roles, Logins: u.Traits["logins"],
		TTL: rec.TTL, CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy, Instances: inst}
}

// ListBots lists bots and their live instances.
func (s *Server) ListBots(ctx context.Context, c Caller) ([]BotInfo, error) {
	if err := s.authorize(c, "ListBots"); err != nil {
		return nil, err
	}
	recs, err := listJSON[botRecord](ctx, s.b, prefixBots)
	if err != nil {
		return nil, err
	}
	out := make([]BotInfo, 0, len(recs))
	for _, rec := range recs {
		u, err := s.userRecord(ctx, identity.BotUser(rec.Name))
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		inst, err := listJSON[botInstance](ctx, s.b, prefixBotInstances+rec.Name+"/")
		if err != nil {
			return nil, err
		}
		out = append(out, botInfo(*u, rec, inst))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteBot removes a bot and voids its certificates at once, everywhere
// (as DeleteUser does for a person): its instances can no longer renew.
func (s *Server) DeleteBot(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteBot"); err != nil {
		return err
	}
	user := identity.BotUser(name)
	u, err := s.userRecord(ctx, user)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && u.Type != identity.TypeBot) {
		return fmt.Errorf("bot %q %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := s.b.Delete(ctx, prefixUsers+user); err != nil {
		return err
	}
	var errs []error
	if err := s.b.Delete(ctx, prefixBots+name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		errs = append(errs, err)
	}
	items, err := s.b.List(ctx, prefixBotInstances+name+"/", 0)
	errs = append(errs, err)
	for _, it := range items {
		if err := s.b.Delete(ctx, it.Key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	s.emit(ctx, audit.Event{Event: audit.BotDelete, User: c.Name(), Success: true,
		Fields: map[string]any{"bot": name, "target_user": user, "roles": u.Roles}})
	errs = append(errs, s.voidCerts(ctx, c, user, "bot "+name+" was removed"))
	return errors.Join(errs...)
}

// botUser loads the record of an existing bot by name.
func (s *Server) botUser(ctx context.Context, name string) (*identity.User, botRecord, error) {
	var rec botRecord
	u, err := s.userRecord(ctx, identity.BotUser(name))
	if err == nil && u.Type != identity.TypeBot {
		err = fmt.Errorf("user %q is not a bot: %w", u.Name, storage.ErrNotFound)
	}
	if err == nil {
		err = s.getJSON(ctx, prefixBots+name, &rec)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, rec, fmt.Errorf("bot %q %w", name, storage.ErrNotFound)
	}
	return u, rec, err
}

// newSecretToken stores a single-use join token for a bot (type bot).
func (s *Server) newSecretToken(ctx context.Context, c Caller, req wire.CreateTokenRequest) (*TokenResult, error) {
	if req.TTL == 0 {
		req.TTL = defaultBotTokenTTL
	}
	if req.TTL < 0 || req.TTL > maxTokenTTL {
		return nil, badRequest("token TTL %s is not between 0 and the maximum %s", req.TTL, maxTokenTTL)
	}
	if req.Reusable {
		return nil, badRequest("a bot's join token is single use (it becomes the bot's renewable identity)")
	}
	tok, err := identity.NewToken()
	if err != nil {
		return nil, err
	}
	exp := s.now().Add(req.TTL).UTC()
	h := identity.HashToken(tok)
	t := Token{Type: tokenTypeBot, Expires: exp, CreatedBy: c.Name(), Hint: tok[:6], Hash: h, Bot: req.Bot}
	if err := s.createJSON(ctx, prefixTokens+h, t, exp); err != nil {
		return nil, fmt.Errorf("store token: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.TokenCreate, User: c.Name(), Success: true,
		Fields: map[string]any{"token_type": tokenTypeBot, "bot": req.Bot, "expires": exp, "reusable": false, "hint": t.Hint}})
	return &TokenResult{Token: tok, Type: tokenTypeBot, Expires: exp}, nil
}

// createBotToken is CreateToken for the types that join bots: bot (a
// secret, single use) and oidc (no secret: rules on a CI provider's ID
// tokens).
func (s *Server) createBotToken(ctx context.Context, c Caller, req CreateTokenRequest) (*TokenResult, error) {
	if _, _, err := s.botUser(ctx, req.Bot); err != nil {
		if req.Bot == "" {
			return nil, badRequest("a %s token joins a bot: name it (--bot NAME)", req.Type)
		}
		return nil, err
	}
	if req.Type == tokenTypeBot {
		return s.newSecretToken(ctx, c, req)
	}
	if err := validateNodeName("token name", req.Name); err != nil {
		return nil, err
	}
	if err := checkOIDCJoinRules(req.OIDC); err != nil {
		return nil, badRequest("%v", err)
	}
	var exp time.Time
	switch {
	case req.TTL < 0:
		return nil, badRequest("the token TTL must be positive")
	case req.TTL > 0:
		exp = s.now().Add(req.TTL).UTC()
	}
	key := oidcTokenKey(req.Name)
	t := Token{Type: tokenTypeOIDC, Expires: exp, Reusable: true, CreatedBy: c.Name(), Hint: req.Name, Hash: strings.TrimPrefix(key, prefixTokens),
		Bot: req.Bot, OIDC: req.OIDC}
	if err := s.createJSON(ctx, key, t, exp); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("join token %q %w", req.Name, storage.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("store token: %w", err)
	}
	s.emit(ctx, audit.Event{Event: audit.TokenCreate, User: c.Name(), Success: true,
		Fields: map[string]any{"token_type": tokenTypeOIDC, "bot": req.Bot, "expires": exp, "reusable": true, "hint": req.Name,
			"issuer": req.OIDC.Issuer, "audience": req.OIDC.Audience, "allow": req.OIDC.Allow}})
	return &TokenResult{Token: req.Name, Type: tokenTypeOIDC, Expires: exp}, nil
}

// oidcTokenKey is where an OIDC join token is stored: by name, apart from
// secret tokens (stored by the hex SHA-256 of the secret, never "oidc-").
func oidcTokenKey(name string) string { return prefixTokens + "oidc-" + name }

// JoinBot turns a join token into a bot instance: certificates carrying a
// new instance id and generation 1. A secret token is spent (single use);
// an OIDC token is a rule, and the ID token must satisfy it.
func (s *Server) JoinBot(ctx context.Context, req wire.BotJoinRequest) (*wire.BotCerts, error) {
	ev := audit.Event{Event: audit.BotJoin, RemoteAddr: req.RemoteAddr, Fields: map[string]any{"method": "token"}}
	refuse := func(reason string, err error) (*wire.BotCerts, error) {
		ev.Success, ev.Error = false, reason
		s.emit(ctx, ev)
		return nil, err
	}
	if len(req.Token) > 256 || len(req.JoinToken) > 256 || len(req.IDToken) > maxIDTokenLen || len(req.PublicKey) > 16<<10 {
		return refuse("oversized input", badRequest("join request too large"))
	}
	if (req.Token == "") == (req.JoinToken == "") {
		return refuse("no join token", badRequest("give a join token (--token-file) or an OIDC join token's name with an ID token"))
	}
	// The key first: a key auth would not sign must not spend the token.
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return refuse("bad public key", badRequest("%v", err))
	}
	attempt, err := s.beginAttempt(ctx, "bot-join", req.RemoteAddr, "")
	if err != nil {
		return nil, err
	}
	defer attempt.Abandon()
	var bot string
	if req.Token != "" {
		bot, err = s.useBotToken(ctx, req.Token, req.RemoteAddr)
	} else {
		ev.Fields["method"], ev.Fields["join_token"] = tokenTypeOIDC, req.JoinToken
		var claims map[string]any
		bot, claims, err = s.useOIDCToken(ctx, req.JoinToken, req.IDToken)
		ev.Fields["issuer"], ev.Fields["subject"] = claims["iss"], claims["sub"]
	}
	if err != nil {
		attempt.Fail()
		return refuse(strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": "), err)
	}
	attempt.Succeed()
	ev.User, ev.Fields["bot"] = identity.BotUser(bot), bot
	issued := s.now()
	u, rec, err := s.botUser(ctx, bot)
	if err != nil {
		return refuse("bot not found", fmt.Errorf("%w: the token's bot %q no longer exists", ErrUnauthenticated, bot))
	}
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles}); err != nil {
		return refuse("locked", err)
	}
	id, err := newBotInstanceID()
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	inst := botInstance{ID: id, Method: ev.Fields["method"].(string), JoinToken: req.JoinToken, Generation: 1, JoinedAt: now, RenewedAt: now,
		RemoteAddr: req.RemoteAddr}
	resp, err := s.issueBotCerts(ctx, u, rec, &inst, pub, req.RemoteAddr, issued)
	if err != nil {
		return refuse("certificate issuance failed", err)
	}
	if err := s.createJSON(ctx, botInstanceKey(bot, id), inst, inst.Expires.Add(botInstanceLinger)); err != nil {
		return refuse("store instance", fmt.Errorf("store bot instance: %w", err))
	}
	ev.Success = true
	ev.Fields["instance"], ev.Fields["generation"] = id, inst.Generation
	s.emit(ctx, ev)
	return resp, nil
}

func botInstanceKey(bot, id string) string { return prefixBotInstances + bot + "/" + id }

func newBotInstanceID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "bi-" + hex.EncodeToString(b), nil
}

// useBotToken spends a bot's single-use join token and returns its bot.
func (s *Server) useBotToken(ctx context.Context, tok, remote string) (string, error) {
	key := prefixTokens + identity.HashToken(tok)
	var t Token
	err := s.getJSON(ctx, key, &t)
	reason := ""
	switch {
	case errors.Is(err, storage.ErrNotFound):
		reason = "the join token is unknown, expired or already used"
	case err != nil:
		return "", err
	case !s.now().Before(t.Expires):
		reason = "the join token expired"
	case t.Type != tokenTypeBot:
		reason = fmt.Sprintf("the join token is for %s, not a bot", t.Type)
	default:
		// Deleting is the atomic claim: of two joins with one token, one
		// gets it.
		if err := s.b.Delete(ctx, key); err != nil {
			reason = "the join token was already used"
		}
	}
	s.emit(ctx, audit.Event{Event: audit.TokenUse, RemoteAddr: remote, Success: reason == "", Error: reason,
		Fields: map[string]any{"token_type": tokenTypeBot, "bot": t.Bot}})
	if reason != "" {
		return "", fmt.Errorf("%w: %s; ask an admin for a new one: warden tokens add --type bot --bot NAME", ErrUnauthenticated, reason)
	}
	return t.Bot, nil
}

// issueBotCerts issues certificates of bot u for pub: the instance's
// renewable identity when inst is set (at inst.Generation).
func (s *Server) issueBotCerts(ctx context.Context, u *identity.User, rec botRecord, inst *botInstance, pub ssh.PublicKey, remote string, issued time.Time) (*wire.BotCerts, error) {
	p := issueParams{user: u.Name, roles: u.Roles, traits: u.Traits, pub: pub, ttl: rec.TTL, remote: remote, issued: issued}
	if inst != nil {
		p.botInstance, p.botGeneration = inst.ID, inst.Generation
	}
	resp, err := s.issueCerts(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &wire.BotCerts{LoginResponse: *resp, Bot: rec.Name}
	if inst != nil {
		inst.Expires = resp.Expires
		out.Instance, out.Generation = inst.ID, inst.Generation
	}
	return out, nil
}

// RenewBotCerts renews a bot instance's identity: the caller's certificate
// must carry the instance's current generation, and the new certificates
// carry the next. A certificate of an older generation means two copies of
// the identity: auth locks the bot, refusing both, and audits
// bot.generation_mismatch. Two renewals at once with one certificate are
// the same thing: one advances the generation (compare-and-swap), the
// other finds it advanced.
func (s *Server) RenewBotCerts(ctx context.Context, c Caller, req wire.BotCertsRequest) (*wire.BotCerts, error) {
	if err := s.authorize(c, "RenewBotCerts"); err != nil {
		return nil, err
	}
	if len(req.Roles) > 0 {
		return nil, badRequest("a renewal keeps the bot's roles; outputs choose theirs (bots/certs)")
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	issued := s.now()
	u, rec, inst, rev, err := s.callerBot(ctx, c, req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	next := inst
	next.Generation++
	next.RenewedAt, next.RemoteAddr = s.now().UTC(), req.RemoteAddr
	resp, err := s.issueBotCerts(ctx, u, rec, &next, pub, req.RemoteAddr, issued)
	if err != nil {
		return nil, err
	}
	// Stored only once the certificates exist; a lost race is a copy.
	err = s.casJSON(ctx, botInstanceKey(rec.Name, inst.ID), rev, next, next.Expires.Add(botInstanceLinger))
	if errors.Is(err, storage.ErrCompareFailed) || errors.Is(err, storage.ErrNotFound) {
		var cur botInstance
		if gerr := s.getJSON(ctx, botInstanceKey(rec.Name, inst.ID), &cur); gerr != nil {
			return nil, denied("bot %s instance %s is gone; join again", rec.Name, inst.ID)
		}
		return nil, s.generationMismatch(ctx, c, req.RemoteAddr, rec.Name, cur)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// BotOutputCerts issues certificates for one of the bot's outputs: roles
// among the bot's current ones (all when none are named), no generation,
// expiring with the caller's identity. Only a bot's current identity may
// ask: an output's certificates cannot make more.
func (s *Server) BotOutputCerts(ctx context.Context, c Caller, req wire.BotCertsRequest) (*wire.BotCerts, error) {
	if err := s.authorize(c, "BotOutputCerts"); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	issued := s.now()
	u, rec, _, _, err := s.callerBot(ctx, c, req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	roles := uniq(slices.Clone(req.Roles))
	for _, r := range roles {
		if !slices.Contains(u.Roles, r) {
			return nil, denied("bot %s does not hold role %q (its roles: %s)", rec.Name, r, strings.Join(u.Roles, ", "))
		}
	}
	out := *u
	if len(roles) > 0 {
		out.Roles = roles
	}
	p := issueParams{user: u.Name, roles: out.Roles, traits: u.Traits, pub: pub, ttl: rec.TTL, remote: req.RemoteAddr, issued: issued, notAfter: c.Expires}
	resp, err := s.issueCerts(ctx, p)
	if err != nil {
		return nil, err
	}
	return &wire.BotCerts{LoginResponse: *resp, Bot: rec.Name}, nil
}

// callerBot checks that c is a bot instance's identity at the instance's
// current generation, and returns the bot and the instance.
func (s *Server) callerBot(ctx context.Context, c Caller, remote string) (*identity.User, botRecord, botInstance, int64, error) {
	var inst botInstance
	var rec botRecord
	if !identity.IsBotUserName(c.User) || c.BotInstance == "" || c.BotGeneration == 0 {
		return nil, rec, inst, 0, denied("only a bot's own identity (from warden bot start) gets bot certificates; this certificate is not one")
	}
	name := strings.TrimPrefix(c.User, identity.BotUserPrefix)
	u, rec, err := s.botUser(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, rec, inst, 0, denied("bot %q no longer exists", name)
	}
	if err != nil {
		return nil, rec, inst, 0, err
	}
	if err := s.CheckLock(lock.Subject{User: u.Name, Roles: u.Roles, Issued: c.Issued}); err != nil {
		return nil, rec, inst, 0, err
	}
	rev, err := s.getJSONRev(ctx, botInstanceKey(name, c.BotInstance), &inst)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, rec, inst, 0, denied("bot %s instance %s is unknown (expired or removed); join again with a new token", name, c.BotInstance)
	}
	if err != nil {
		return nil, rec, inst, 0, err
	}
	if c.BotGeneration != inst.Generation {
		return nil, rec, inst, 0, s.generationMismatch(ctx, c, remote, name, inst)
	}
	return u, rec, inst, rev, nil
}

// generationMismatch locks bot name, whose instance inst is at a newer
// generation than the caller's certificate, audits both sources and
// returns the refusal.
func (s *Server) generationMismatch(ctx context.Context, c Caller, remote, name string, inst botInstance) error {
	user := identity.BotUser(name)
	s.emit(ctx, audit.Event{Event: audit.BotGenerationMismatch, User: user, RemoteAddr: remote, Success: false,
		Error: "an older generation of the bot's identity tried to renew",
		Fields: map[string]any{"bot": name, "instance": inst.ID, "presented_generation": c.BotGeneration,
			"current_generation": inst.Generation, "current_remote_addr": inst.RemoteAddr, "current_since": inst.RenewedAt}})
	now := s.now().UTC()
	l := &lock.Lock{Target: lock.Target{User: user}, CreatedBy: "auth", CreatedAt: now,
		Message: fmt.Sprintf("bot %s is locked: two copies of its identity renewed (generation %d after %d); an admin must check and unlock it", name, c.BotGeneration, inst.Generation)}
	if err := s.storeLock(ctx, Caller{Kind: KindAdmin, User: "auth"}, l); err != nil {
		return fmt.Errorf("lock bot %s after a generation mismatch: %w", name, err)
	}
	return denied("bot %s: this identity's generation %d is older than the current %d (a copy of it renewed); the bot is locked", name, c.BotGeneration, inst.Generation)
}

// botMayRequestAccess refuses access requests by a bot unless one of its
// roles allows bots to make them (rules: access_request create).
func (s *Server) botMayRequestAccess(u *identity.User) error {
	if u.Type != identity.TypeBot {
		return nil
	}
	if err := policy.CheckResource(s.roles.get(u.Roles), policy.ResourceAccessRequest, policy.VerbCreate); err != nil {
		return denied("bot %s may not request access: none of its roles allows it (a rule granting %s %s)", u.Name, policy.VerbCreate, policy.ResourceAccessRequest)
	}
	return nil
}
