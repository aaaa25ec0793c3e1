package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/service"
	"github.com/warden-sh/warden/internal/storage/migrate"
	"github.com/warden-sh/warden/internal/storage/postgres"
	"github.com/warden-sh/warden/internal/storage/sqlite"
)

func newMigrateCmd(g *globals) *cobra.Command {
	var (
		from, to, passwordFile, recFrom, recTo string
		replace                                bool
	)
	cmd := &cobra.Command{
		Use:   "migrate --from sqlite:PATH --to postgres://USER@HOST/DB",
		Short: "Move a cluster's storage from SQLite to PostgreSQL",
		Long: `Copies the state (users, roles, CAs, nodes, locks...), the audit log row
for row (its seqs and hashes unchanged: the chain and its signed checkpoints
verify on PostgreSQL as they did before) and, with --recordings-to, the
session recordings, then says what it moved.

Stop auth first: what is written to the SQLite file after the copy starts
is not moved. The target must be empty; --replace deletes what it holds.
The password comes from --password-file, or WARDEN_POSTGRES_PASSWORD, or
libpq's PGPASSWORD and ~/.pgpass: never from --to, which ps shows.
Afterwards, set in the config:

  storage:
    type: postgres
    conn: postgres://USER@HOST/DB
    password_file: /etc/warden/pgpass
    recordings_dir: DIR   # if you moved them`,
		Example: `  warden migrate --from sqlite:/var/lib/warden/warden.db \
      --to postgres://warden@db.example:5432/warden --password-file /etc/warden/pgpass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			path, ok := strings.CutPrefix(from, "sqlite:")
			if !ok || path == "" {
				return errors.New("--from must be sqlite:PATH (the warden.db of the data directory)")
			}
			if !strings.HasPrefix(to, "postgres://") && !strings.HasPrefix(to, "postgresql://") {
				return errors.New("--to must be a postgres:// URL")
			}
			if postgres.HasPassword(to) {
				return errors.New("--to holds a password: every user of this machine can read command lines; use --password-file or " + service.PasswordEnv)
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			pw := os.Getenv(service.PasswordEnv)
			if passwordFile != "" {
				data, err := os.ReadFile(passwordFile)
				if err != nil {
					return err
				}
				pw, _, _ = strings.Cut(string(data), "\n")
			}
			if recFrom == "" {
				recFrom = filepath.Join(filepath.Dir(path), "recordings")
			}
			src, err := sqlite.Open(ctx, sqlite.Config{Path: path})
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := postgres.Open(ctx, postgres.Config{URL: to, Password: pw})
			if err != nil {
				return err
			}
			defer dst.Close()
			rep, err := migrate.Run(ctx, src, dst, migrate.Options{Replace: replace, RecordingsFrom: recFrom, RecordingsTo: recTo})
			if err != nil {
				return err
			}
			out := g.io.Out
			textf(out, "moved from %s to %s:\n", path, to)
			textf(out, "  state:      %d items\n", rep.Items)
			if rep.Events > 0 {
				textf(out, "  audit log:  %d events (seq %d to %d), %d retention checkpoints\n", rep.Events, rep.FirstSeq, rep.LastSeq, rep.RetentionCheckpoints)
			} else {
				textf(out, "  audit log:  no events, %d retention checkpoints\n", rep.RetentionCheckpoints)
			}
			switch {
			case rep.TargetChain.OK:
				textf(out, "  audit chain verifies on the target: %d events checked, last seq %d\n", rep.TargetChain.Checked, rep.TargetChain.Last.Seq)
			case rep.SourceChain.FirstBad != nil:
				textf(out, "  WARNING: the audit chain did not verify on the source either: %s (seq %d); run warden audit verify\n",
					rep.SourceChain.FirstBad.Reason, rep.SourceChain.FirstBad.Seq)
			}
			if recTo != "" && filepath.Clean(recTo) != filepath.Clean(recFrom) {
				textf(out, "  recordings: %d (%d bytes) copied from %s to %s\n", rep.Recordings, rep.RecordingBytes, recFrom, recTo)
			} else {
				textf(out, "  recordings: left in %s (set storage.recordings_dir to it, or copy with --recordings-to)\n", recFrom)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source: sqlite:PATH")
	f.StringVar(&to, "to", "", "target: postgres://USER@HOST:PORT/DB (no password)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the PostgreSQL password (else "+service.PasswordEnv+", PGPASSWORD, ~/.pgpass)")
	f.BoolVar(&replace, "replace", false, "delete what the target database holds first")
	f.StringVar(&recFrom, "recordings-from", "", "the source's recordings directory (default: recordings beside the SQLite file)")
	f.StringVar(&recTo, "recordings-to", "", "copy the recordings to this directory (the target's storage.recordings_dir)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}
