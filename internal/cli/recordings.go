package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

func newRecordingsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "recordings", Short: "Session recordings: list, search, export"}
	var user, node, format string
	var since time.Duration
	ls := &cobra.Command{Use: "ls [--user U] [--node N] [--since 1d]", Short: "List recorded sessions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			var from time.Time
			if since > 0 {
				from = time.Now().Add(-since)
			}
			list, err := c.ListRecordings(cmd.Context(), user, node, from)
			if err != nil {
				return err
			}
			return render(g, format, list, "SESSION\tUSER\tLOGIN\tNODE\tSTARTED\tBYTES\tSTATE", func(r recording.Info) []string {
				state := "recording"
				switch {
				case r.Complete && r.Interrupted:
					state = "complete (node died)"
				case r.Complete:
					state = "complete"
				}
				return []string{r.SessionID, r.User, r.Login, r.Node, r.Start.Local().Format(time.DateTime), strconv.FormatInt(r.Length, 10), state}
			})
		}}
	ls.Flags().StringVar(&user, "user", "", "only this user's sessions")
	ls.Flags().StringVar(&node, "node", "", "only sessions on this node")
	ls.Flags().DurationVar(&since, "since", 0, "only sessions newer than this (e.g. 24h)")
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")

	export := &cobra.Command{Use: "export SESSION_ID", Short: "Write a recording as an asciicast v2 file (asciinema play/cat accept it)",
		Example: "  warden recordings export 3f2a... > session.cast && asciinema play session.cast",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := g.openRecording(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer rc.Close()
			// The check's outcome comes after the bytes: an altered
			// recording is written out, then the command fails.
			_, err = io.Copy(g.io.Out, rc)
			return err
		}}

	var limit int
	search := &cobra.Command{Use: "search TEXT", Short: "Find sessions whose output or typed commands contain TEXT",
		Long: `Search every recording's screen output (escape sequences removed, lines as the
screen showed them) and typed input for TEXT, case-insensitively. Each hit
gives the session and the offset where the line began: replay from there
with warden play SESSION --from OFFSET.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.SearchRecordings(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			return render(g, format, res, "SESSION\tOFFSET\tUSER\tNODE\tIN\tLINE", func(m wire.RecordingMatch) []string {
				where := "output"
				if m.Type == "i" {
					where = "typed"
				}
				return []string{m.SessionID, m.Offset.Round(time.Millisecond).String(), m.User, m.Node, where, m.Line}
			})
		}}
	search.Flags().IntVar(&limit, "limit", 100, "maximum number of hits")
	search.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")

	verify := &cobra.Command{Use: "verify [SESSION_ID...]", Short: "Check recordings against the hashes recorded when they completed",
		Long: `Read every recording (or those named) and check it against the length and
SHA-256 that the audit log's recording.complete event recorded; also report
recordings that completed and are gone (not deleted by retention). A
recording still being recorded has nothing to check against yet.

Exit status: 0 all intact, 2 some altered or missing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			code, err := verifyRecordings(g, cmd.Context(), c, args)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		}}
	cmd.AddCommand(ls, export, search, verify)
	return cmd
}

// verifyRecordings checks recordings, prints each problem and a summary,
// and returns the exit status it calls for (2 when any is altered or
// missing).
func verifyRecordings(g *globals, ctx context.Context, c *api.Client, ids []string) (int, error) {
	checks, err := c.VerifyRecordings(ctx, ids)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return 0, fmt.Errorf("%w (warden recordings ls lists them)", err)
		}
		return 0, err
	}
	count := map[string]int{}
	for _, ch := range checks {
		count[ch.Status]++
		switch ch.Status {
		case wire.RecordingIntact:
		case wire.RecordingLive:
			if len(ids) > 0 {
				textf(g.io.Out, "recording %s: still being recorded, nothing to check against yet\n", ch.SessionID)
			}
		default:
			textf(g.io.Out, "RECORDING %s: %s\n", strings.ToUpper(ch.Status), ch.Error)
		}
	}
	textf(g.io.Out, "recordings: %d intact, %d altered, %d missing, %d still being recorded\n",
		count[wire.RecordingIntact], count[wire.RecordingAltered], count[wire.RecordingMissing], count[wire.RecordingLive])
	if count[wire.RecordingAltered]+count[wire.RecordingMissing] > 0 {
		return 2, nil
	}
	return 0, nil
}

func newPlayCmd(g *globals) *cobra.Command {
	var opt asciicast.PlayOptions
	var skipIdle bool
	cmd := &cobra.Command{
		Use:   "play SESSION_ID [--speed 4] [--skip-idle] [--from 2m30s]",
		Short: "Replay a recorded session in this terminal",
		Example: "  warden play 3f2a... --speed 4 --skip-idle\n" +
			"  warden play 3f2a... --from 2m30s",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opt.Speed <= 0 {
				return fmt.Errorf("--speed must be positive")
			}
			if skipIdle && opt.MaxIdle == 0 {
				opt.MaxIdle = time.Second
			}
			rc, err := g.openRecording(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer rc.Close()
			r, err := asciicast.NewReader(rc)
			if err == nil {
				err = asciicast.Play(cmd.Context(), r, g.io.Out, opt)
			}
			if err != nil && cmd.Context().Err() == nil {
				// An altered recording may not even parse: its check,
				// at the end of the stream, says why.
				if _, cerr := io.Copy(io.Discard, rc); cerr != nil {
					return cerr
				}
				return fmt.Errorf("recording %s: %w", args[0], err)
			}
			return err
		},
	}
	cmd.Flags().Float64Var(&opt.Speed, "speed", 1, "playback speed factor")
	cmd.Flags().BoolVar(&skipIdle, "skip-idle", false, "cap pauses at 1s (or --max-idle)")
	cmd.Flags().DurationVar(&opt.MaxIdle, "max-idle", 0, "cap pauses at this duration")
	cmd.Flags().DurationVar(&opt.From, "from", 0, "start at this offset (earlier output is drawn instantly)")
	return cmd
}

// openRecording streams a recording's bytes, checked (api.RecordingBody);
// closing the reader also closes the client. A recording still being
// recorded is said to be unchecked, on stderr.
func (g *globals) openRecording(ctx context.Context, id string) (io.ReadCloser, error) {
	c, err := g.adminClient()
	if err != nil {
		return nil, err
	}
	rc, err := c.OpenRecording(ctx, id)
	if err != nil {
		c.Close()
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("no recording of session %q (warden recordings ls lists them)", id)
		}
		return nil, err
	}
	if !rc.Complete {
		textf(g.io.Err, "session %s is still being recorded (or its node has not finished uploading it): "+
			"its bytes are checked once it completes\n", id)
	}
	return recordingStream{ReadCloser: rc, c: c}, nil
}

type recordingStream struct {
	io.ReadCloser
	c *api.Client
}

func (r recordingStream) Close() error {
	err := r.ReadCloser.Close()
	r.c.Close()
	return err
}
