package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/sqlite"
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
	cmd.AddCommand(search, newAuditVerifyCmd(g), newAuditExportKeyCmd(g), newAuditTailCmd(g))
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var pubkeys []string
	var dbPath, filePath string
	var noRecordings bool
	cmd := &cobra.Command{
		Use:   "verify [--pubkey FILE [--db PATH | --file EVENTS.jsonl]]",
		Short: "Check the audit log (hash chain, signed checkpoints) and the recordings",
		Long: `Check the audit log's hash chain and signed checkpoints, naming the first
altered, removed or reordered event, then every recording against the hash
recorded when it completed.

Without --pubkey, auth checks its own log with its own key. With --pubkey
(the key from warden audit export-key, kept away from the cluster), the check
runs here and trusts nothing of auth's: on a copy of the database (--db), on
an exported JSON-lines log such as the audit sink's file (--file, - for stdin),
or on the events the cluster's API sends.

Exit status: 0 intact, 2 tampered, 3 intact but with a warning (events
that no checkpoint signs although they should be signed by now).`,
		Example: "  warden audit verify\n" +
			"  warden audit export-key > audit.pub   # once; keep it elsewhere\n" +
			"  warden audit verify --pubkey audit.pub --file /var/log/warden/audit.jsonl\n" +
			"  warden audit verify --pubkey audit.pub --db backup/warden.db",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (dbPath != "" || filePath != "") && len(pubkeys) == 0 {
				return fmt.Errorf("--db and --file need --pubkey (warden audit export-key writes it)")
			}
			if dbPath != "" && filePath != "" {
				return fmt.Errorf("give --db or --file, not both")
			}
			var keys []ed25519.PublicKey
			for _, p := range pubkeys {
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				k, err := audit.ParsePublicKeys(data)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				keys = append(keys, k...)
			}
			var (
				res *audit.VerifyResult
				err error
				c   *api.Client
			)
			if dbPath == "" && filePath == "" {
				if c, err = g.adminClient(); err != nil {
					return err
				}
				defer c.Close()
			}
			switch {
			case dbPath != "":
				var r audit.VerifyResult
				r, err = sqlite.VerifyFile(ctx, dbPath, keys...)
				res = &r
			case filePath != "":
				res, err = verifyEventsFile(filePath, keys)
			case len(keys) > 0:
				res, err = verifyFromAPI(ctx, c, keys)
			default:
				res, err = c.VerifyAudit(ctx)
			}
			if err != nil {
				return err
			}
			code := printVerifyResult(g, res)
			if c != nil && !noRecordings {
				if rc, err := verifyRecordings(g, ctx, c, nil); err != nil {
					return err
				} else if rc > code {
					code = rc
				}
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&pubkeys, "pubkey", nil, "check checkpoint signatures here with this public key (PEM; repeat for older keys)")
	f.StringVar(&dbPath, "db", "", "check this copy of the database (warden.db, read-only) instead of asking auth")
	f.StringVar(&filePath, "file", "", "check this exported log: JSON lines, as the audit sink writes (- for stdin)")
	f.BoolVar(&noRecordings, "no-recordings", false, "check the audit log only")
	return cmd
}

// printVerifyResult reports an audit log check and returns the exit status
// it calls for.
func printVerifyResult(g *globals, res *audit.VerifyResult) int {
	if !res.OK {
		textf(g.io.Out, "AUDIT LOG TAMPERED: %s (after %d intact events)\n", res.FirstBad.String(), res.Checked-1)
		return 2
	}
	textf(g.io.Out, "audit log intact: %d events verified\n", res.Checked)
	switch {
	case !res.SignaturesChecked:
		fmt.Fprintln(g.io.Out, "checkpoint signatures not checked (this auth signs none)")
	case res.Checkpoints == 0:
		fmt.Fprintln(g.io.Out, "no signed checkpoint yet: the log is protected by its hash chain only")
	default:
		textf(g.io.Out, "signed: events up to seq %d, by %d checkpoints (the last at %s)",
			res.Signed.Seq, res.Checkpoints, res.SignedAt.Local().Format(time.DateTime))
		if n := res.Last.Seq - res.Signed.Seq; n > 0 {
			textf(g.io.Out, "; the %d events after it are protected by the hash chain until the next checkpoint", n)
		}
		fmt.Fprintln(g.io.Out)
	}
	for _, w := range res.Warnings {
		textf(g.io.Out, "WARNING: %s\n", w)
	}
	if len(res.Warnings) > 0 {
		return 3
	}
	return 0
}

// verifyEventsFile checks an exported log: one JSON event per line (blank
// lines skipped), numbers kept exact.
func verifyEventsFile(path string, keys []ed25519.PublicKey) (*audit.VerifyResult, error) {
	in := os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	v := audit.NewChainVerifier(keys)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var ev audit.Event
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if v.Add(ev) != nil {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := v.Result()
	return &res, nil
}

// verifyFromAPI checks, here, the events the cluster's API sends: every
// hash recomputed and every checkpoint signature checked with keys.
func verifyFromAPI(ctx context.Context, c *api.Client, keys []ed25519.PublicKey) (*audit.VerifyResult, error) {
	v := audit.NewChainVerifier(keys)
	var after int64
	for {
		page, err := c.SearchAudit(ctx, audit.Query{AfterSeq: after, Limit: audit.MaxLimit})
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			if v.Add(ev) != nil {
				res := v.Result()
				return &res, nil
			}
		}
		after = page[len(page)-1].Seq
	}
	res := v.Result()
	return &res, nil
}

func newAuditExportKeyCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export-key [-o FILE]",
		Short: "Print the public key that verifies the audit log's signed checkpoints (PEM)",
		Long: `Print the public key that verifies the audit log's signed checkpoints. Keep
it somewhere the cluster's administrators and database cannot change (with
your SIEM, in a ticket, on paper): warden audit verify --pubkey FILE then
detects any rewrite of history before the last checkpoint, without trusting
auth or its database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.AuditKey(cmd.Context())
			if err != nil {
				return err
			}
			if out == "" {
				_, err = io.WriteString(g.io.Out, k.PublicKey)
			} else {
				err = os.WriteFile(out, []byte(k.PublicKey), 0o644)
			}
			if err == nil {
				textf(g.io.Err, "audit signing key %s\n", k.KeyID)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	return cmd
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
				all, last, err := lastEvents(cmd.Context(), c, n)
				if err != nil {
					return err
				}
				for _, ev := range all {
					if err := printEvent(g, format, ev); err != nil {
						return err
					}
				}
				// Follow from the end of the log, even with -n 0.
				after = last
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

// lastEvents pages through the log and keeps the last n events, and the
// sequence number of the log's last event. It stops at an empty page,
// whatever page size the server allows.
func lastEvents(ctx context.Context, c *api.Client, n int) ([]audit.Event, int64, error) {
	var keep []audit.Event
	var after int64
	for {
		page, err := c.SearchAudit(ctx, audit.Query{AfterSeq: after, Limit: 10000})
		if err != nil || len(page) == 0 {
			return keep, after, err
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
