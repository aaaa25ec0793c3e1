// Package migrate moves a cluster's storage from SQLite to PostgreSQL
// (warden migrate): the key-value state, the audit log row for row (seqs
// and hashes unchanged, so the chain and its signed checkpoints verify on
// the target as they did on the source), and the recordings' files.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage/auditchain"
	"github.com/warden-sh/warden/internal/storage/postgres"
	"github.com/warden-sh/warden/internal/storage/sqlite"
)

// ErrTargetNotEmpty is returned when the target holds data and
// Options.Replace is not set.
var ErrTargetNotEmpty = errors.New("the target database is not empty")

// Options adjust Run.
type Options struct {
	// Replace deletes what the target holds first; without it a target
	// with any item or audit event is refused.
	Replace bool
	// RecordingsFrom and RecordingsTo are the source's recordings
	// directory and where the target's auth will keep them
	// (storage.recordings_dir). Both empty, or the same: nothing to copy.
	RecordingsFrom, RecordingsTo string
}

// Report says what Run moved.
type Report struct {
	Items                    int
	Events                   int64
	FirstSeq, LastSeq        int64
	RetentionCheckpoints     int
	Recordings               int
	RecordingBytes           int64
	SourceChain, TargetChain audit.VerifyResult
}

// Run copies src into dst. The source should not be written meanwhile
// (stop auth first): what is written after its snapshot is not moved. If
// Run fails part way, run it again with Replace.
func Run(ctx context.Context, src *sqlite.Backend, dst *postgres.Backend, opt Options) (Report, error) {
	var r Report
	items, events, cps, err := dst.Contents(ctx)
	if err != nil {
		return r, err
	}
	if items+events+cps > 0 {
		if !opt.Replace {
			return r, fmt.Errorf("%w: it holds %d items and %d audit events (--replace deletes them first)", ErrTargetNotEmpty, items, events)
		}
		if err := dst.Wipe(ctx); err != nil {
			return r, err
		}
	}
	if r.SourceChain, err = src.AuditLog().Verify(ctx); err != nil {
		return r, fmt.Errorf("verify the source's audit log: %w", err)
	}

	all, err := src.List(ctx, "", 0)
	if err != nil {
		return r, fmt.Errorf("read the source's state: %w", err)
	}
	for _, it := range all {
		if _, err := dst.Put(ctx, it); err != nil {
			return r, fmt.Errorf("write the target's state: %w", err)
		}
	}
	r.Items = len(all)

	im, err := dst.BeginAuditImport(ctx)
	if err != nil {
		return r, err
	}
	d, err := src.DumpAudit(ctx, func(e auditchain.StoredEvent) error {
		if r.FirstSeq == 0 {
			r.FirstSeq = e.Seq
		}
		r.LastSeq = e.Seq
		return im.Add(ctx, e)
	})
	if err != nil {
		im.Abort(ctx)
		return r, err
	}
	if r.Events, err = im.Finish(ctx, d); err != nil {
		return r, err
	}
	r.RetentionCheckpoints = len(d.Checkpoints)
	if r.TargetChain, err = dst.AuditLog().Verify(ctx); err != nil {
		return r, fmt.Errorf("verify the target's audit log: %w", err)
	}
	if r.SourceChain.OK && !r.TargetChain.OK {
		return r, fmt.Errorf("the audit log verifies on the source but not on the target: %+v", r.TargetChain.FirstBad)
	}

	if opt.RecordingsFrom != "" && opt.RecordingsTo != "" && filepath.Clean(opt.RecordingsFrom) != filepath.Clean(opt.RecordingsTo) {
		if r.Recordings, r.RecordingBytes, err = copyRecordings(opt.RecordingsFrom, opt.RecordingsTo); err != nil {
			return r, err
		}
	}
	return r, nil
}

// recordingFile tells a recording store's files: SESSION.cast (the bytes),
// SESSION.json (the state) and SESSION.blocks (the block hashes).
func recordingFile(name string) bool {
	return strings.HasSuffix(name, ".cast") || strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".blocks")
}

// copyRecordings copies every recording (SESSION.cast, its SESSION.json
// state and SESSION.blocks hashes) from one directory to another, refusing to overwrite a different
// file, and returns how many recordings and bytes it copied.
func copyRecordings(from, to string) (int, int64, error) {
	entries, err := os.ReadDir(from)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("recordings: %w", err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return 0, 0, fmt.Errorf("recordings: %w", err)
	}
	n, total := 0, int64(0)
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !recordingFile(name) {
			continue
		}
		size, err := copyFile(filepath.Join(from, name), filepath.Join(to, name))
		if err != nil {
			return n, total, fmt.Errorf("recordings: %w", err)
		}
		total += size
		if strings.HasSuffix(name, ".cast") {
			n++
		}
	}
	return n, total, nil
}

func copyFile(from, to string) (int64, error) {
	in, err := os.Open(from)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		same, serr := sameContent(from, to)
		if serr != nil {
			return 0, serr
		}
		if !same {
			return 0, fmt.Errorf("%s exists and differs from %s", to, from)
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func sameContent(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return string(x) == string(y), nil
}
