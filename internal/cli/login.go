package cli

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/client"
)

func newLoginCmd(g *globals) *cobra.Command {
	var opt client.LoginOptions
	var passwordStdin, passkey bool
	var request, sso, browser string
	cmd := &cobra.Command{
		Use:   "login --proxy HOST:PORT --user NAME",
		Short: "Log in and receive short-lived certificates",
		Long: `Log in with password and TOTP. A new key pair is generated on this machine (the
private key never leaves it) and auth signs an SSH certificate and an X.509
certificate for it, valid for at most what your roles allow (default 8h).

The profile is stored in ~/.warden (mode 0600). On first contact with a
cluster its CA fingerprint is printed and pinned.

For scripts: --password-stdin reads the password from standard input and
--otp gives the TOTP code.

With --sso NAME, sign in through the single sign-on connector NAME (OIDC or
SAML) instead: your browser opens the identity provider's page (--browser
none prints the URL to open on any browser of this machine), and comes back
to a listener on this machine's loopback address. Your roles come from the
provider's claims or attributes at every login.

With --passkey, sign in with a passkey (WebAuthn) through your browser: it
opens this cluster's passkey page (--browser none prints the URL), you
confirm with the passkey, and the browser comes back to a listener on this
machine's loopback address with the certificates' reference. Register
passkeys first in the web UI's Security page (warden mfa add --type passkey).`,
		Example: "  warden login --proxy 127.0.0.1:3080 --user developer\n  warden login --proxy warden.example.com:3080 --passkey\n  echo \"$PW\" | warden login --proxy p:3080 --user ci --password-stdin --otp 123456",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.profileDir()
			if err != nil {
				return err
			}
			if opt.Proxy == "" || opt.User == "" {
				if p, err := client.LoadProfile(dir); err == nil {
					opt.Proxy = cmp(opt.Proxy, p.Proxy)
					opt.User = cmp(opt.User, p.User)
				}
			}
			if opt.Proxy == "" {
				return errors.New("--proxy HOST:PORT is required")
			}
			// loggedIn ends every kind of login: it uses the access request
			// if one is given, or shows the new status.
			loggedIn := func(p *client.Profile, err error) error {
				if err != nil {
					return err
				}
				if request != "" {
					return useRequest(g, cmd.Context(), p, request)
				}
				printStatus(g, p)
				return nil
			}
			if passkey {
				return loggedIn(client.LoginPasskey(cmd.Context(), dir, client.PasskeyOptions{Proxy: opt.Proxy, TTL: opt.TTL,
					CAPin: opt.CAPin, Insecure: opt.Insecure, Out: g.io.Err, Open: func(u string) error { return openBrowser(g, browser, u) }}))
			}
			if sso != "" {
				return loggedIn(client.LoginSSO(cmd.Context(), dir, client.SSOOptions{Proxy: opt.Proxy, Connector: sso, TTL: opt.TTL,
					CAPin: opt.CAPin, Insecure: opt.Insecure, Out: g.io.Err, Open: func(u string) error { return openBrowser(g, browser, u) }}))
			}
			if opt.User == "" {
				return errors.New("--user NAME is required")
			}
			if passwordStdin {
				if opt.Password, err = g.io.readLine(); err != nil {
					return fmt.Errorf("reading password from standard input: %w", err)
				}
			} else if opt.Password, err = g.io.prompt("Password for "+opt.User, true); err != nil {
				return err
			}
			if opt.OTP == "" {
				if opt.OTP, err = g.io.prompt("TOTP code", false); err != nil {
					return err
				}
			}
			opt.OTP = strings.TrimSpace(opt.OTP)
			opt.Out = g.io.Err
			return loggedIn(client.Login(cmd.Context(), dir, opt))
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.Proxy, "proxy", "", "proxy address HOST:PORT")
	f.StringVar(&opt.User, "user", "", "Warden user name")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	f.StringVar(&opt.OTP, "otp", "", "TOTP code (prompted if not given)")
	f.DurationVar(&opt.TTL, "ttl", 0, "requested certificate lifetime (capped by your roles; default 8h)")
	f.StringVar(&opt.CAPin, "ca-pin", "", "expected cluster CA fingerprint (sha256:...)")
	f.BoolVar(&opt.Insecure, "insecure", false, "accept a cluster CA that differs from the pinned one (testing only)")
	f.StringVar(&request, "request", "", "also use this approved access request")
	f.StringVar(&sso, "sso", "", "sign in with this single sign-on connector")
	f.BoolVar(&passkey, "passkey", false, "sign in with a passkey, through your browser")
	f.StringVar(&browser, "browser", "", "with --sso or --passkey: none prints the sign-in URL instead of opening a browser")
	return cmd
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func printStatus(g *globals, p *client.Profile) {
	// Exact to the second under a minute: "expired" only once it is.
	state := "EXPIRED: run warden login"
	if left := time.Until(p.Expires); left > 0 {
		state = "valid for " + humanDuration(left)
	}
	textf(g.io.Out, `> Profile: %s
  Proxy:   %s
  Cluster: %s
  User:    %s
  Roles:   %s
  Logins:  %s
  Valid until: %s [%s]
`, p.Path(""), p.Proxy, p.Cluster, p.User, strings.Join(p.Roles, ", "), strings.Join(p.Logins, ", "),
		p.Expires.Local().Format(time.RFC1123), state)
}

func newStatusCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{Use: "status", Short: "Show who you are logged in as", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.profile()
			if err != nil {
				return err
			}
			if done, err := printAs(g.io.Out, format, p); done {
				return err
			}
			printStatus(g, p)
			return nil
		}}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "logout", Short: "Delete your keys and certificates", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.profileDir()
			if err != nil {
				return err
			}
			if err := client.Logout(dir); err != nil {
				return err
			}
			textf(g.io.Out, "Logged out: keys and certificates deleted.\n")
			return nil
		}}
}

// openBrowser shows the IdP's URL: printed, and opened with xdg-open (or
// open on macOS) unless browser is none.
func openBrowser(g *globals, browser, u string) error {
	textf(g.io.Err, "Open this URL in a browser to sign in:\n  %s\n", u)
	if browser == "none" {
		return nil
	}
	for _, prog := range []string{"xdg-open", "open"} {
		if path, err := exec.LookPath(prog); err == nil {
			cmd := exec.Command(path, u)
			if cmd.Start() == nil {
				go cmd.Wait()
				return nil
			}
		}
	}
	return nil
}
