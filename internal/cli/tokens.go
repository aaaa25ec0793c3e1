package cli

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/warden-sh/warden/internal/wire"
)

func newTokensCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Manage join tokens (admin)"}
	var typ string
	var ttl time.Duration
	var reusable bool
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
			tok, err := c.CreateToken(cmd.Context(), wire.CreateTokenRequest{Type: typ, TTL: ttl, Reusable: reusable})
			if err != nil {
				return err
			}
			use := "single-use"
			if reusable {
				use = "reusable"
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
	add.Flags().StringVar(&typ, "type", "node", "token type: node, or kube (a kube agent: warden start --services kube, docs/kubernetes.md)")
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
				rows[i] = []string{t.Hint + "...", t.Type, strconv.FormatBool(t.Reusable), t.Expires.Local().Format(time.DateTime), t.CreatedBy}
			}
			return writeTable(g.io.Out, "TOKEN\tTYPE\tREUSABLE\tEXPIRES\tCREATED BY", rows)
		}}
	rm := &cobra.Command{Use: "rm TOKEN", Short: "Revoke a join token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			textf(g.io.Out, "token revoked\n")
			return nil
		}}
	cmd.AddCommand(add, ls, rm)
	return cmd
}
