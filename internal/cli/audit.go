package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/audit"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Search the audit log"}
	var q audit.Query
	var since time.Duration
	var format string
	search := &cobra.Command{
		Use:     "search [--type T] [--user U] [--since 1h] [-o json]",
		Short:   "List audit events",
		Example: "  warden audit search --type user.login --since 1h\n  warden audit search --user developer -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return fmt.Errorf("--since must be positive")
			}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			evs, err := c.SearchAudit(cmd.Context(), q)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(g.io.Out)
				for _, ev := range evs {
					if err := enc.Encode(ev); err != nil {
						return err
					}
				}
				return nil
			}
			if format != "text" && format != "" {
				return fmt.Errorf("unknown output format %q (use text or json)", format)
			}
			tw := tabwriter.NewWriter(g.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tEVENT\tUSER\tLOGIN\tNODE\tRESULT\tDETAILS")
			for _, ev := range evs {
				result := "ok"
				if !ev.Success {
					result = "FAILED"
					if ev.Error != "" {
						result += ": " + ev.Error
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.Local().Format(time.DateTime), ev.Event, ev.User,
					ev.Login, ev.Node, result, formatFields(ev.Fields))
			}
			return tw.Flush()
		},
	}
	f := search.Flags()
	f.StringVar(&q.Type, "type", "", "event type, e.g. user.login, session.start")
	f.StringVar(&q.User, "user", "", "user name")
	f.StringVar(&q.Node, "node", "", "node name")
	f.StringVar(&q.SessionID, "session", "", "session id")
	f.DurationVar(&since, "since", 0, "only events newer than this (e.g. 1h, 30m)")
	f.IntVar(&q.Limit, "limit", 0, "maximum number of events (default 1000)")
	f.Int64Var(&q.AfterSeq, "after", 0, "only events after this sequence number (paging)")
	f.StringVarP(&format, "output", "o", "text", "output format: text or json (one event per line)")
	cmd.AddCommand(search)
	return cmd
}

func formatFields(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	s := strings.Join(parts, " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
