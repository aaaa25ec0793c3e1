package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/wire"
)

func newUsersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users (admin)"}
	var roles, logins string
	add := &cobra.Command{
		Use:   "add NAME --roles ROLE[,ROLE] [--logins LOGIN[,LOGIN]]",
		Short: "Add a user and print a single-use invite",
		Long: `Add a user. The user finishes signing up with the printed invite token and
command (warden signup --proxy ... --ca-pin ...): they choose a password and
enrol a TOTP authenticator.

--logins sets the user's "logins" trait, which roles use as {{internal.logins}}
(the built-in role "access" allows exactly those OS logins).`,
		Example: "  warden users add developer --roles access --logins dev",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			// The pin first: an invite printed without it is no use.
			ping, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			inv, err := c.CreateUser(cmd.Context(), wire.CreateUserRequest{Name: args[0], Roles: splitList(roles), Logins: splitList(logins)})
			if err != nil {
				return err
			}
			printInvite(g, c.Addr(), ping.TLSCAFingerprint, inv, "created")
			return nil
		},
	}
	add.Flags().StringVar(&roles, "roles", "", "comma-separated roles (required)")
	add.Flags().StringVar(&logins, "logins", "", "comma-separated OS logins (the logins trait)")
	_ = add.MarkFlagRequired("roles")

	var format string
	ls := &cobra.Command{Use: "ls", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			users, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			users = peopleOnly(g, format, users)
			return render(g, format, users, "NAME\tROLES\tLOGINS\tSTATUS\tCREATED\tMFA DEVICE", func(u wire.UserInfo) []string {
				return []string{u.Name, strings.Join(u.Roles, ","), strings.Join(u.Traits["logins"], ","),
					u.Status, u.CreatedAt.Local().Format(time.DateTime), u.MFADevice}
			})
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")

	rm := removeCmd(g, "rm NAME", "Remove a user", (*api.Client).DeleteUser, func(w io.Writer, name string) {
		textf(w, "User %q removed. Their certificates no longer work, and their live sessions have ended.\n", name)
	})
	var newRoles string
	update := &cobra.Command{Use: "update NAME --roles ROLE[,ROLE]", Short: "Set a user's roles",
		Long: `Set a user's roles (the list replaces the old one). API calls use the new
roles at once. If a role is taken away, the certificates the user holds stop
working everywhere, live sessions included, and the user logs in again; roles
added reach SSH at the user's next login.`,
		Example: "  warden users update developer --roles access,auditor",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			u, err := c.UpdateUser(cmd.Context(), args[0], wire.UpdateUserRequest{Roles: splitList(newRoles)})
			if err != nil {
				return err
			}
			textf(g.io.Out, "User %q now has roles %s.\n", u.Name, strings.Join(u.Roles, ","))
			return nil
		}}
	update.Flags().StringVar(&newRoles, "roles", "", "comma-separated roles (required)")
	_ = update.MarkFlagRequired("roles")
	reset := &cobra.Command{Use: "reset NAME", Short: "Clear a user's password and TOTP, void their certificates and print a new invite", Args: cobra.ExactArgs(1),
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
			inv, err := c.ResetUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printInvite(g, c.Addr(), ping.TLSCAFingerprint, inv, "reset")
			return nil
		}}
	cmd.AddCommand(add, ls, rm, update, reset)
	return cmd
}

// printInvite prints the invite token and the exact command that uses it,
// with the cluster's CA pin so that signup trusts nothing on first use.
// (No link: there is no web page for it yet.)
func printInvite(g *globals, proxy, caPin string, inv *wire.InviteResult, what string) {
	textf(g.io.Out, `User %q %s. Give them this single-use invite token; it expires %s (in %s):

  %s

They finish signing up with this command, which asks for the token, then a
new password and a code from their authenticator app:

  warden signup --proxy %s --ca-pin %s
`, inv.User, what, inv.Expires.Local().Format(time.RFC1123), humanDuration(time.Until(inv.Expires)), inv.Token, proxy, caPin)
}

// parseInvite accepts a bare token (with --proxy), or the invite link of
// earlier versions (https://HOST:PORT/web/invite/TOKEN). An empty token
// is asked for later.
func parseInvite(arg, proxy string) (addr, token string, err error) {
	if strings.HasPrefix(arg, "https://") {
		u, err := url.Parse(arg)
		if err != nil {
			return "", "", fmt.Errorf("invalid invite link: %w", err)
		}
		tok, ok := strings.CutPrefix(u.Path, "/web/invite/")
		if !ok || tok == "" || strings.Contains(tok, "/") {
			return "", "", errors.New("invalid invite link: expected https://HOST:PORT/web/invite/TOKEN")
		}
		if proxy == "" {
			proxy = u.Host
		}
		return proxy, tok, nil
	}
	if proxy == "" {
		return "", "", errors.New("--proxy HOST:PORT is required (the command that warden users add printed has it)")
	}
	return proxy, arg, nil
}

func newSignupCmd(g *globals) *cobra.Command {
	var proxy, caPin, tokenFile string
	var passwordStdin, insecure bool
	cmd := &cobra.Command{
		Use:   "signup --proxy HOST:PORT --ca-pin sha256:... [TOKEN]",
		Short: "Finish signing up: set a password and enrol a TOTP authenticator",
		Long: `Finish signing up with the invite an admin gave you: run the command that
warden users add printed. It checks that the proxy is the cluster's (--ca-pin)
before it sends anything, then asks for the invite token (or reads it from
--token-file, or takes it as the argument). You choose a password and scan
the QR code with an authenticator app; enrolment completes only once you type
a valid code from it. Then you are logged in, as with warden login (the
profile is stored in ~/.warden).

For scripts: --token-file gives the token; --password-stdin reads the password
from the first line of standard input and the TOTP code from the next line
(read after the otpauth URL has been printed). Without --token-file or a
TOKEN argument, the token is read first, from the line before the password.

The invite link of earlier versions (https://HOST:PORT/web/invite/TOKEN) is
accepted as the argument too.`,
		Example: "  warden signup --proxy 127.0.0.1:3080 --ca-pin sha256:5d41...\n" +
			"  warden signup --proxy p:3080 --ca-pin sha256:5d41... --token-file invite --password-stdin",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := ""
			if len(args) == 1 {
				arg = args[0]
			}
			if tokenFile != "" {
				if arg != "" {
					return errors.New("give the invite token as the argument or with --token-file, not both")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("invite token: %w", err)
				}
				if arg = strings.TrimSpace(string(b)); arg == "" {
					return fmt.Errorf("invite token file %s is empty", tokenFile)
				}
			}
			addr, token, err := parseInvite(arg, proxy)
			if err != nil {
				return err
			}
			dir, err := g.profileDir()
			if err != nil {
				return err
			}
			c, _, err := client.TrustCluster(cmd.Context(), dir, addr, caPin, insecure, g.io.Err)
			if err != nil {
				return err
			}
			defer c.Close()
			if token == "" {
				// Only now, once the proxy is known to be the cluster's.
				if token, err = g.io.prompt("Invite token", true); err != nil {
					return err
				}
				if token = strings.TrimSpace(token); token == "" {
					return errors.New("no invite token given")
				}
			}
			ch, err := c.BeginSignup(cmd.Context(), token)
			if err != nil {
				return err
			}
			out := g.io.Out
			textf(out, "Signing up %q to cluster %q.\n\nScan this QR code with your authenticator app:\n\n", ch.User, ch.Cluster)
			qrterminal.GenerateWithConfig(ch.URL, qrterminal.Config{Level: qrterminal.L, Writer: out,
				HalfBlocks: true, BlackChar: qrterminal.BLACK_BLACK, WhiteChar: qrterminal.WHITE_WHITE,
				BlackWhiteChar: qrterminal.BLACK_WHITE, WhiteBlackChar: qrterminal.WHITE_BLACK, QuietZone: 1})
			textf(out, "\nor add it by hand: %s\n\n", ch.URL)
			password, err := readNewPassword(g, passwordStdin)
			if err != nil {
				return err
			}
			code, err := g.io.prompt("Code from your authenticator", false)
			if err != nil {
				return err
			}
			// Signing up logs in too: the code just typed is spent, and a
			// login right after would have to wait for the next one.
			p, err := client.CompleteSignup(cmd.Context(), c, dir, addr, token, password, strings.TrimSpace(code))
			if err != nil {
				return err
			}
			textf(out, "Signup complete. You are logged in (next time: warden login --proxy %s --user %s).\n\n", addr, ch.User)
			printStatus(g, p)
			return nil
		},
	}
	cmd.Flags().StringVar(&proxy, "proxy", "", "proxy address HOST:PORT")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the invite token from this file")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password (then the TOTP code) from standard input")
	cmd.Flags().StringVar(&caPin, "ca-pin", "", "expected cluster CA fingerprint (sha256:...)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "accept a cluster CA that differs from the pinned one (testing only)")
	return cmd
}

func readNewPassword(g *globals, fromStdin bool) (string, error) {
	if fromStdin || !g.io.stdinIsTerminal() {
		if !fromStdin {
			return "", errors.New("no terminal to ask for a password: use --password-stdin")
		}
		return g.io.readLine()
	}
	for {
		p1, err := g.io.prompt("New password (at least 12 characters)", true)
		if err != nil {
			return "", err
		}
		p2, err := g.io.prompt("Repeat the password", true)
		if err != nil {
			return "", err
		}
		if p1 == p2 {
			return p1, nil
		}
		textf(g.io.Err, "The passwords differ; try again.\n")
	}
}

// peopleOnly leaves bots out of a user listing (warden bots ls lists
// them), saying so in a text listing.
func peopleOnly(g *globals, format string, users []wire.UserInfo) []wire.UserInfo {
	people := users[:0:0]
	for _, u := range users {
		if u.Type != identity.TypeBot {
			people = append(people, u)
		}
	}
	if n := len(users) - len(people); n > 0 && format == "text" {
		textf(g.io.Err, "(%d bots not shown: warden bots ls)\n", n)
	}
	return people
}
