package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
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
			if format != "text" && format != "json" && format != "" {
				return fmt.Errorf("unknown output format %q (use text or json)", format)
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
			// On stderr, so that the output stays a table or JSON lines.
			switch {
			case len(evs) == 0:
				textf(g.io.Err, "no matching events\n")
			case len(evs) >= q.EffectiveLimit():
				textf(g.io.Err, "the first %d matching events; for the next ones, repeat with --after %d\n", len(evs), evs[len(evs)-1].Seq)
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
			rows := make([][]string, len(evs))
			for i, ev := range evs {
				rows[i] = []string{ev.Time.Local().Format(time.DateTime), ev.Event, ev.User,
					ev.Login, ev.Node, eventResult(ev), formatFields(ev.Fields)}
			}
			return writeTable(g.io.Out, "TIME\tEVENT\tUSER\tLOGIN\tNODE\tRESULT\tDETAILS", rows)
		},
	}
	f := search.Flags()
	f.StringVar(&q.Type, "type", "", "event type, e.g. user.login, session.start")
	f.StringVar(&q.User, "user", "", "user name")
	f.StringVar(&q.Node, "node", "", "node name")
	f.StringVar(&q.SessionID, "session", "", "session id")
	f.StringVar(&q.Text, "text", "", "free text anywhere in the event (case-insensitive)")
	f.DurationVar(&since, "since", 0, "only events newer than this (e.g. 1h, 30m)")
	f.IntVar(&q.Limit, "limit", 0, fmt.Sprintf("maximum number of events (default %d, at most %d)", audit.DefaultLimit, audit.MaxLimit))
	f.Int64Var(&q.AfterSeq, "after", 0, "only events after this sequence number (paging)")
	f.StringVarP(&format, "output", "o", "text", "output format: text or json (one event per line)")
	cmd.AddCommand(search, newAuditVerifyCmd(g), newAuditTailCmd(g))
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain; names the first altered, removed or reordered event",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.VerifyAudit(cmd.Context())
			if err != nil {
				return err
			}
			if res.OK {
				textf(g.io.Out, "audit log intact: %d events verified\n", res.Checked)
				return nil
			}
			textf(g.io.Out, "AUDIT LOG TAMPERED: %s (after %d intact events)\n", res.FirstBad.String(), res.Checked)
			return exitError{code: 2}
		},
	}
}

func newAuditTailCmd(g *globals) *cobra.Command {
	var follow bool
	var n int
	var after int64
	var format string
	cmd := &cobra.Command{
		Use:     "tail [-f] [-n 20] [-o json]",
		Short:   "Show the latest audit events; -f follows new ones (JSON lines for a SIEM)",
		Example: "  warden audit tail -f -o json | my-siem-shipper",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			if after == 0 {
				// Start n events back from the end.
				all, err := lastEvents(cmd.Context(), c, n)
				if err != nil {
					return err
				}
				for _, ev := range all {
					if err := printEvent(g, format, ev); err != nil {
						return err
					}
					after = ev.Seq
				}
				if !follow {
					return nil
				}
			}
			err = c.TailAudit(cmd.Context(), after, func(ev audit.Event) error { return printEvent(g, format, ev) })
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new events")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many recent events to show first")
	cmd.Flags().Int64Var(&after, "after", 0, "start after this sequence number instead")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json (one event per line)")
	return cmd
}

// lastEvents pages through the log and keeps the last n events. It stops
// at an empty page, whatever page size the server allows.
func lastEvents(ctx context.Context, c *api.Client, n int) ([]audit.Event, error) {
	var keep []audit.Event
	var after int64
	for {
		page, err := c.SearchAudit(ctx, audit.Query{AfterSeq: after, Limit: 10000})
		if err != nil || len(page) == 0 {
			return keep, err
		}
		keep = append(keep, page...)
		if len(keep) > n {
			keep = keep[len(keep)-n:]
		}
		after = page[len(page)-1].Seq
	}
}

func printEvent(g *globals, format string, ev audit.Event) error {
	if format == "json" {
		return json.NewEncoder(g.io.Out).Encode(ev)
	}
	textf(g.io.Out, "%s %-22s user=%s login=%s node=%s %s %s\n", ev.Time.Local().Format(time.DateTime),
		ev.Event, ev.User, ev.Login, ev.Node, eventResult(ev), formatFields(ev.Fields))
	return nil
}

// eventResult is "ok", or "FAILED" with the event's error.
func eventResult(ev audit.Event) string {
	if ev.Success {
		return "ok"
	}
	if ev.Error != "" {
		return "FAILED: " + ev.Error
	}
	return "FAILED"
}

func formatFields(m map[string]any) string {
	s := joinKV(m, " ")
	if len(s) > 120 {
		cut := 117
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
