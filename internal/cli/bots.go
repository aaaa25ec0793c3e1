package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/bot"
	"github.com/warden-sh/warden/internal/wire"
)

// botTokenEnv is the environment variable that may hold a bot's join
// token.
const botTokenEnv = "WARDEN_BOT_TOKEN"

func newBotsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bots", Short: "Manage bots: machine users for CI/CD and automation (admin)",
		Long: `Bots are machine users (user name bot-NAME): roles and logins like a person's,
never a password or MFA. A bot joins once with a single-use token (or, in CI,
with its job's OIDC ID token: warden tokens add --type oidc), then renews its
own short-lived certificates: warden bot start. See docs/bots.md.`}
	var roles, logins []string
	var ttl, tokenTTL time.Duration
	add := &cobra.Command{
		Use:   "add NAME --roles ROLE[,ROLE] [--logins LOGIN[,LOGIN]] [--ttl 1h]",
		Short: "Add a bot and print its single-use join token and the command to run",
		Example: `  warden bots add deploy --roles deploy --logins deploy --ttl 1h
  warden lock --bot deploy          # stop it at once; warden bots rm deploy removes it`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ping, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.CreateBot(cmd.Context(), wire.CreateBotRequest{Name: args[0], Roles: roles, Logins: logins, TTL: ttl, TokenTTL: tokenTTL})
			if err != nil {
				return err
			}
			b := res.Bot
			textf(g.io.Out, `Bot %q added (user %s): roles %s, logins %s, certificates valid %s.

Its single-use join token %s expires %s. Run this where the bot
runs; the token goes in a file, not on the command line, where ps would show
it to every user of the machine:

  (umask 077; echo %s > bot-token)
  warden bot start --proxy %s --ca-pin %s --token-file bot-token --dest /opt/warden/%s

Then ssh, scp, rsync and Ansible use the output directory as it is:

  ssh -F /opt/warden/%s/ssh_config LOGIN@NODE

(Or put the token in the environment variable %s instead of a file.)
`, b.Name, b.User, strings.Join(b.Roles, ","), orNone(b.Logins), b.TTL, res.Token.Token, res.Token.Expires.Local().Format(time.RFC1123),
				res.Token.Token, c.Addr(), ping.TLSCAFingerprint, b.Name, b.Name, botTokenEnv)
			return nil
		},
	}
	add.Flags().StringSliceVar(&roles, "roles", nil, "roles of the bot (at least one)")
	add.Flags().StringSliceVar(&logins, "logins", nil, "OS logins of the bot (the logins trait)")
	add.Flags().DurationVar(&ttl, "ttl", time.Hour, "lifetime of the bot's certificates (it renews with a third left)")
	add.Flags().DurationVar(&tokenTTL, "token-ttl", 30*time.Minute, "how long the join token is valid")

	var format string
	ls := &cobra.Command{Use: "ls", Short: "List bots and their live instances", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			bots, err := c.ListBots(cmd.Context())
			if err != nil {
				return err
			}
			return render(g, format, bots, "NAME\tUSER\tROLES\tLOGINS\tTTL\tINSTANCES", func(b wire.BotInfo) []string {
				var inst []string
				for _, i := range b.Instances {
					inst = append(inst, fmt.Sprintf("%s (%s, gen %d, %s)", i.ID, i.Method, i.Generation, i.RemoteAddr))
				}
				return []string{b.Name, b.User, strings.Join(b.Roles, ","), strings.Join(b.Logins, ","), b.TTL.String(), orNone(inst)}
			})
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")

	rm := removeCmd(g, "rm NAME", "Remove a bot: its certificates stop working at once, live sessions included", (*api.Client).DeleteBot, func(w io.Writer, name string) {
		textf(w, "bot %s removed; its certificates are void\n", name)
	})
	cmd.AddCommand(add, ls, rm)
	return cmd
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func newBotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bot", Short: "Run a bot: join and keep its certificates fresh"}
	var cfg bot.Config
	var tokenFile, idTokenFile, idTokenEnv, storage string
	var dests []string
	start := &cobra.Command{
		Use:   "start --proxy HOST:PORT --ca-pin PIN --token-file FILE --dest DIR[:ROLE,...] [--dest ...] [--oneshot]",
		Short: "Join as a bot and keep its certificates in output directories, renewed",
		Long: `Join as a bot, then keep each output directory (--dest) filled with a private
key, an SSH certificate, a TLS certificate, known_hosts with the cluster's host
CA and an ssh_config that plain ssh, scp, rsync and Ansible use as they are:

  ssh -F DIR/ssh_config LOGIN@NODE
  ANSIBLE_SSH_ARGS="-F DIR/ssh_config" ansible-playbook -i inventory site.yml

and, when its roles reach Kubernetes clusters, a kubeconfig (one context per
cluster, named as it; the certificate files by path, so renewals need no
rewrite) that plain kubectl uses:

  kubectl --kubeconfig DIR/kubeconfig [--context CLUSTER] get pods

The bot's own identity stays in --storage (0700); it renews with a third of its
lifetime left (jittered), each renewal with a new key and the next generation
of the identity: if a copy of it renews too, auth locks the bot. An output
may take some of the bot's roles (--dest DIR:ROLE,ROLE); never more.

Joining needs a single-use join token (warden bots add prints it), read from
--token-file or $` + botTokenEnv + `, or in CI an OIDC join token's name
(--join-token) with the job's ID token, read from --id-token-file or the
environment variable --id-token-env names; never from the command line.

--oneshot joins (or renews), writes the outputs once and exits: for a CI job.`,
		Example: `  warden bot start --proxy warden.example.com:3080 --ca-pin sha256:... \
      --token-file bot-token --dest /opt/warden/deploy
  warden bot start --proxy warden.example.com:3080 --ca-pin sha256:... --oneshot \
      --join-token github-deploy --id-token-env WARDEN_ID_TOKEN --dest "$RUNNER_TEMP/warden"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, d := range dests {
				o, err := parseDest(d)
				if err != nil {
					return err
				}
				cfg.Outputs = append(cfg.Outputs, o)
			}
			switch {
			case tokenFile != "":
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("read the join token: %w", err)
				}
				cfg.Token = strings.TrimSpace(string(data))
			case os.Getenv(botTokenEnv) != "":
				cfg.Token = strings.TrimSpace(os.Getenv(botTokenEnv))
				os.Unsetenv(botTokenEnv)
			}
			if cfg.JoinToken != "" {
				if cfg.Token != "" {
					return errors.New("give a join token (--token-file) or an OIDC join token (--join-token), not both")
				}
				switch {
				case idTokenFile != "" && idTokenEnv != "":
					return errors.New("give --id-token-file or --id-token-env, not both")
				case idTokenFile != "":
					cfg.IDToken = func() (string, error) {
						data, err := os.ReadFile(idTokenFile)
						return strings.TrimSpace(string(data)), err
					}
				case idTokenEnv != "":
					cfg.IDToken = func() (string, error) {
						v := strings.TrimSpace(os.Getenv(idTokenEnv))
						if v == "" {
							return "", fmt.Errorf("the environment variable %s holds no ID token", idTokenEnv)
						}
						return v, nil
					}
				}
			}
			var err error
			if cfg.Binary, err = os.Executable(); err != nil {
				return err
			}
			if storage == "" {
				storage = filepath.Join(g.dataDir, "bot")
			}
			if cfg.DataDir, err = filepath.Abs(storage); err != nil {
				return err
			}
			for i := range cfg.Outputs {
				if cfg.Outputs[i].Dir, err = filepath.Abs(cfg.Outputs[i].Dir); err != nil {
					return err
				}
			}
			cfg.Log = g.logger()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = bot.Run(ctx, cfg)
			switch {
			case errors.Is(err, context.Canceled) && ctx.Err() != nil:
				return nil
			case err != nil:
				// The whole chain: what was refused, then auth's reason.
				return errors.New(err.Error())
			}
			return nil
		},
	}
	f := start.Flags()
	f.StringVar(&cfg.Proxy, "proxy", "", "proxy address HOST:PORT")
	f.StringVar(&cfg.CAPin, "ca-pin", "", "the cluster's TLS CA fingerprint (printed by warden bots add), needed to join")
	f.StringVar(&tokenFile, "token-file", "", "file holding the single-use join token (or $"+botTokenEnv+")")
	f.StringVar(&cfg.JoinToken, "join-token", "", "name of an OIDC join token (warden tokens add --type oidc), for CI")
	f.StringVar(&idTokenFile, "id-token-file", "", "file holding the CI job's OIDC ID token (with --join-token)")
	f.StringVar(&idTokenEnv, "id-token-env", "", "environment variable holding the CI job's OIDC ID token (with --join-token)")
	f.StringArrayVar(&dests, "dest", nil, "output directory, optionally with some of the bot's roles: DIR or DIR:ROLE,ROLE (repeat for several)")
	f.StringVar(&storage, "storage", "", "directory of the bot's own identity (default DATA_DIR/bot)")
	f.BoolVar(&cfg.Oneshot, "oneshot", false, "join or renew once, write the outputs and exit")
	cmd.AddCommand(start)
	return cmd
}

// parseDest parses DIR or DIR:ROLE,ROLE.
func parseDest(s string) (bot.Output, error) {
	dir, roles, ok := strings.Cut(s, ":")
	if dir == "" {
		return bot.Output{}, fmt.Errorf("--dest %q: no directory", s)
	}
	o := bot.Output{Dir: dir}
	if ok {
		for _, r := range strings.Split(roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				o.Roles = append(o.Roles, r)
			}
		}
		if len(o.Roles) == 0 {
			return o, fmt.Errorf("--dest %q: no role after the colon", s)
		}
	}
	return o, nil
}
