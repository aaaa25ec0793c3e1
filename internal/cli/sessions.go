package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/warden-sh/warden/internal/auth"
)

func newSessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "Live sessions"}
	var format string
	ls := &cobra.Command{Use: "ls", Short: "List live interactive sessions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			sessions, err := c.ListSessions(cmd.Context())
			if err != nil {
				return err
			}
			return render(g, format, sessions, "SESSION\tUSER\tLOGIN\tNODE\tSTARTED\tPARTICIPANTS", func(s auth.LiveSession) []string {
				return []string{s.ID, s.User, s.Login, s.Node, s.Started.Local().Format(time.DateTime), strings.Join(s.Participants, ",")}
			})
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	cmd.AddCommand(ls)
	return cmd
}
