package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
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
			if done, err := printAs(g.io.Out, format, sessions); done {
				return err
			}
			tw := tabwriter.NewWriter(g.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tUSER\tLOGIN\tNODE\tSTARTED\tPARTICIPANTS")
			for _, s := range sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.User, s.Login, s.Node,
					s.Started.Local().Format(time.DateTime), strings.Join(s.Participants, ","))
			}
			return tw.Flush()
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	cmd.AddCommand(ls)
	return cmd
}
