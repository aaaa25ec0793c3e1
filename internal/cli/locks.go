package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/wire"
)

func newLockCmd(g *globals) *cobra.Command {
	var t lock.Target
	var ttl time.Duration
	var expires, message, botName string
	cmd := &cobra.Command{
		Use:   "lock --user NAME|--bot NAME|--role NAME|--login LOGIN|--node NODE|--request ID|--mfa-device ID|--session ID [--ttl 10m] [--message TEXT]",
		Short: "Cut off a user, role, login, node, access request or MFA device now, live sessions included",
		Long: `Lock a target. Within a second every live session that matches ends, with the
message shown to the user; new connections, new certificates and API calls by
the target are refused until the lock expires or is removed (warden unlock ID).
Without --ttl or --expires the lock stays until removed.`,
		Example: `  warden lock --user contractor --ttl 10m --message "investigating"
  warden lock --node db1 --expires 2030-01-02T15:04:05Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if botName != "" {
				if t.User != "" {
					return fmt.Errorf("give --user or --bot, not both")
				}
				t.User = identity.BotUser(botName) // a bot is the user bot-NAME
			}
			req := wire.CreateLockRequest{Target: t, Message: message, TTL: ttl}
			if expires != "" {
				e, err := time.Parse(time.RFC3339, expires)
				if err != nil {
					return fmt.Errorf("--expires must be an RFC 3339 time such as 2030-01-02T15:04:05Z: %v", err)
				}
				req.Expires = e
			}
			if err := t.Validate(); err != nil {
				return err
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.CreateLock(cmd.Context(), req)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				textf(g.io.Err, "WARNING: %s\n", w)
			}
			until := "until removed"
			if !res.Lock.Expires.IsZero() {
				until = "until " + res.Lock.Expires.Local().Format(time.RFC1123)
			}
			textf(g.io.Out, "Locked %s %s (lock id %s). Remove with: warden unlock %s\n", res.Lock.Target.String(), until, res.Lock.ID, res.Lock.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&t.User, "user", "", "lock a user")
	f.StringVar(&botName, "bot", "", "lock a bot (the same as --user bot-NAME): its renewals and sessions stop")
	f.StringVar(&t.Role, "role", "", "lock everyone holding a role")
	f.StringVar(&t.Login, "login", "", "lock an OS login on every node")
	f.StringVar(&t.Node, "node", "", "lock a node (name or id)")
	f.StringVar(&t.Request, "request", "", "lock an access request")
	f.StringVar(&t.Session, "session", "", "end one live session (its id is in sessions ls); other sessions of its user go on")
	f.StringVar(&t.MFADevice, "mfa-device", "", "lock an MFA device: the certificates of logins made with it (its id is in users ls and user.login events)")
	f.DurationVar(&ttl, "ttl", 0, "how long the lock lasts (e.g. 10m); default until removed")
	f.StringVar(&expires, "expires", "", "when the lock ends, RFC 3339")
	f.StringVar(&message, "message", "", "message shown to the locked user")
	return cmd
}

func newLocksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "locks", Short: "List locks"}
	var format string
	ls := &cobra.Command{Use: "ls", Short: "List locks in force", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			locks, err := c.ListLocks(cmd.Context())
			if err != nil {
				return err
			}
			return render(g, format, locks, "ID\tTARGET\tEXPIRES\tCREATED BY\tMESSAGE", func(l *lock.Lock) []string {
				exp := "never"
				if !l.Expires.IsZero() {
					exp = l.Expires.Local().Format(time.DateTime)
				}
				target := l.Target.String()
				if !l.IssuedNotAfter.IsZero() {
					target += ", certificates issued by " + l.IssuedNotAfter.Local().Format(time.DateTime)
				}
				return []string{l.ID, target, exp, l.CreatedBy, l.Message}
			})
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	cmd.AddCommand(ls)
	return cmd
}

func newUnlockCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "unlock ID", Short: "Remove a lock (access comes back at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteLock(cmd.Context(), args[0]); err != nil {
				return err
			}
			textf(g.io.Out, "lock %s removed\n", args[0])
			return nil
		}}
}
