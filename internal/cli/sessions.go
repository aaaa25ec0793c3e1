package cli

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/warden-sh/warden/internal/wire"
)

func newSessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "Live sessions"}
	var format string
	ls := &cobra.Command{Use: "ls", Short: "List live sessions: shells and commands, with or without a terminal", Args: cobra.NoArgs,
		Long: `List the sessions in progress on every node: id, user, login, node, kind,
start time and participants. KIND is shell or exec (a command, as in
ssh host CMD); +tty marks a session with a terminal, which is recorded and
may be joined (warden join ID).`,
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
			return render(g, format, sessions, "SESSION\tUSER\tLOGIN\tNODE\tKIND\tSTARTED\tPARTICIPANTS", func(s wire.LiveSession) []string {
				return []string{s.ID, s.User, s.Login, s.Node, sessionKind(s), s.Started.Local().Format(time.DateTime), strings.Join(s.Participants, ",")}
			})
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	cmd.AddCommand(ls)
	return cmd
}

// sessionKind describes a live session for the table: a shell or a
// command, with a terminal (which joining needs) or not.
func sessionKind(s wire.LiveSession) string {
	kind := cmp(s.Kind, "shell")
	if s.TTY {
		return kind + "+tty"
	}
	return kind
}
