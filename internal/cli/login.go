package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/client"
)

func newLoginCmd(g *globals) *cobra.Command {
	var opt client.LoginOptions
	var passwordStdin bool
	var request string
	cmd := &cobra.Command{
		Use:   "login --proxy HOST:PORT --user NAME",
		Short: "Log in and receive short-lived certificates",
		Long: `Log in with password and TOTP. A new key pair is generated on this machine (the
private key never leaves it) and auth signs an SSH certificate and an X.509
certificate for it, valid for at most what your roles allow (default 8h).

The profile is stored in ~/.warden (mode 0600). On first contact with a
cluster its CA fingerprint is printed and pinned.

For scripts: --password-stdin reads the password from standard input and
--otp gives the TOTP code.`,
		Example: "  warden login --proxy 127.0.0.1:3080 --user developer\n  echo \"$PW\" | warden login --proxy p:3080 --user ci --password-stdin --otp 123456",
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
			p, err := client.Login(cmd.Context(), dir, opt)
			if err != nil {
				return err
			}
			if request != "" {
				return useRequest(g, cmd.Context(), p, request)
			}
			printStatus(g, p)
			return nil
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
