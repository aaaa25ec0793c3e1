package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/wire"
)

func newTokensCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Manage join tokens (admin)"}
	var typ string
	var ttl time.Duration
	var reusable bool
	bt := &botTokenOpts{}
	add := &cobra.Command{
		Use:   "add --type node [--ttl 30m]",
		Short: "Create a join token and print the command to run on the server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ping, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			if typ == "bot" || typ == "oidc" {
				return addBotToken(cmd, g, c, ping, typ, ttl, bt)
			}
			tok, err := c.CreateToken(cmd.Context(), wire.CreateTokenRequest{Type: typ, TTL: ttl, Reusable: reusable})
			if err != nil {
				return err
			}
			use := "single-use"
			if reusable {
				use = "reusable"
			}
			if tok.Type == wire.TokenTypeProxy {
				textf(g.io.Out, `The %s proxy token %s expires %s (in %s).

Run this on the proxy's host to join it (a proxy that runs apart from auth:
docs/postgres.md, "Split deployments"); the token goes in a file, read once:

  (umask 077; echo %s > join-token)
  warden start --services proxy --auth-server %s --token-file join-token --ca-pin %s \
      --proxy-listen 0.0.0.0:3080 --public-addr PROXY-HOST:3080
`, use, tok.Token, tok.Expires.Local().Format(time.RFC1123), humanDuration(ttl), tok.Token, c.Addr(), ping.TLSCAFingerprint)
				return nil
			}
			textf(g.io.Out, `The %s %s token %s expires %s (in %s).

Run this on the server to join it (add your own --labels and --name). The
token goes in a file, not on the command line, where ps would show it to
every user of the machine:

  (umask 077; echo %s > join-token)
  warden start --services %s --proxy %s --token-file join-token --ca-pin %s --labels env=dev%s

(Or put the token in the environment variable %s instead of a file.) The
file is read once, to join; delete it afterwards.
`, use, tok.Type, tok.Token, tok.Expires.Local().Format(time.RFC1123), humanDuration(ttl), tok.Token, tok.Type, c.Addr(), ping.TLSCAFingerprint, joinExtra(tok.Type), tokenEnv)
			return nil
		},
	}
	add.Flags().StringVar(&typ, "type", "node", "token type: node, proxy (a proxy that runs apart from auth: docs/postgres.md), kube (a kube agent: warden start --services kube, docs/kubernetes.md), bot (a bot's single-use join token) or oidc (a CI provider's ID tokens join a bot)")
	botTokenFlags(add, bt)
	add.Flags().DurationVar(&ttl, "ttl", 30*time.Minute, "how long the token is valid (max 168h)")
	add.Flags().BoolVar(&reusable, "reusable", false, "allow several joins until expiry (default: single use)")

	ls := &cobra.Command{Use: "ls", Short: "List join tokens (hints only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			toks, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, len(toks))
			for i, t := range toks {
				hint, exp := t.Hint+"...", "never"
				if t.Type == "oidc" {
					hint = t.Hint // a name, not a secret
				}
				if !t.Expires.IsZero() {
					exp = t.Expires.Local().Format(time.DateTime)
				}
				rows[i] = []string{hint, t.Type, strconv.FormatBool(t.Reusable), exp, t.CreatedBy}
			}
			return writeTable(g.io.Out, "TOKEN\tTYPE\tREUSABLE\tEXPIRES\tCREATED BY", rows)
		}}
	rm := removeCmd(g, "rm TOKEN", "Revoke a join token", (*api.Client).DeleteToken, func(w io.Writer, name string) {
		textf(w, "token revoked\n")
	})
	cmd.AddCommand(add, ls, rm)
	return cmd
}

// botTokenOpts are the flags of tokens add for bot and oidc tokens.
type botTokenOpts struct {
	bot, name, issuer, audience, issuerCA string
	allow                                 []string
}

func botTokenFlags(cmd *cobra.Command, o *botTokenOpts) {
	f := cmd.Flags()
	f.StringVar(&o.bot, "bot", "", "the bot a bot or oidc token joins")
	f.StringVar(&o.name, "name", "", "oidc: the token's name (the bot gives it: warden bot start --join-token NAME)")
	f.StringVar(&o.issuer, "issuer", "", "oidc: the ID tokens' issuer (https://token.actions.githubusercontent.com, https://gitlab.com)")
	f.StringVar(&o.audience, "audience", "", "oidc: the audience the CI job asks its ID token for")
	f.StringArrayVar(&o.allow, "allow", nil, "oidc: claims an ID token must carry, CLAIM=GLOB[,CLAIM=GLOB] (repeat: any one rule lets in), e.g. repository=org/app,ref=refs/heads/main")
	f.StringVar(&o.issuerCA, "issuer-ca", "", "oidc: PEM file of the CA of the issuer's HTTPS certificate (self-hosted CI; default: the system's CAs)")
}

func addBotToken(cmd *cobra.Command, g *globals, c *api.Client, ping *api.PingResponse, typ string, ttl time.Duration, o *botTokenOpts) error {
	req := wire.CreateTokenRequest{Type: typ, Bot: o.bot, Name: o.name}
	if typ == "bot" {
		req.TTL = ttl
	} else {
		if cmd.Flags().Changed("ttl") {
			req.TTL = ttl
		}
		req.OIDC = &wire.OIDCJoinRules{Issuer: o.issuer, Audience: o.audience}
		for _, a := range o.allow {
			rule := map[string]string{}
			for _, kv := range strings.Split(a, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--allow %q: want CLAIM=GLOB[,CLAIM=GLOB]", a)
				}
				rule[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			req.OIDC.Allow = append(req.OIDC.Allow, rule)
		}
		if o.issuerCA != "" {
			data, err := os.ReadFile(o.issuerCA)
			if err != nil {
				return err
			}
			req.OIDC.CAPEM = string(data)
		}
	}
	tok, err := c.CreateToken(cmd.Context(), req)
	if err != nil {
		return err
	}
	if typ == "bot" {
		textf(g.io.Out, `The single-use join token %s for bot %s expires %s. Where the bot runs:

  (umask 077; echo %s > bot-token)
  warden bot start --proxy %s --ca-pin %s --token-file bot-token --dest /opt/warden/%s
`, tok.Token, o.bot, tok.Expires.Local().Format(time.RFC1123), tok.Token, c.Addr(), ping.TLSCAFingerprint, o.bot)
		return nil
	}
	textf(g.io.Out, `OIDC join token %q lets ID tokens from %s (audience %s) that match its rules
join bot %s; it holds no secret. In the CI job, with the job's ID token in the
environment variable WARDEN_ID_TOKEN (see docs/bots.md):

  warden bot start --proxy %s --ca-pin %s --oneshot \
      --join-token %s --id-token-env WARDEN_ID_TOKEN --dest "$HOME/warden"
`, tok.Token, o.issuer, o.audience, o.bot, c.Addr(), ping.TLSCAFingerprint, tok.Token)
	return nil
}
