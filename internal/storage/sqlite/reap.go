package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// reapBatch bounds how many expired items one reaper transaction deletes,
// so the write lock is never held for long.
const reapBatch = 256

func (b *Backend) reapLoop(ctx context.Context) {
	defer b.bg.Done()
	t := time.NewTicker(b.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-b.closing:
			return
		case <-t.C:
		}
		if _, err := b.Reap(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("reap expired items", "err", err)
		}
	}
}

// Reap deletes every item expired at the backend clock's current time,
// delivering an EventDelete (with a fresh revision) for each, and returns
// how many it deleted. The reaper goroutine calls it every ReapInterval;
// it is exported for tests and tools.
func (b *Backend) Reap(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := b.reapOnce(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n < reapBatch {
			return total, nil
		}
	}
}

func (b *Backend) reapOnce(ctx context.Context) (int, error) {
	// Look on a reader first so an idle store never takes the write lock.
	var due bool
	if err := b.reader.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM kv WHERE expires IS NOT NULL AND expires <= ?)`,
		b.now().UnixNano()).Scan(&due); err != nil {
		return 0, fmt.Errorf("reap: %w", err)
	}
	if !due {
		return 0, nil
	}
	n := 0
	err := b.write(ctx, func(tx *sql.Tx, now int64) ([]storage.Event, error) {
		rows, err := tx.QueryContext(ctx,
			`SELECT key FROM kv WHERE expires IS NOT NULL AND expires <= ? ORDER BY expires, key LIMIT ?`,
			now, reapBatch)
		if err != nil {
			return nil, err
		}
		var keys []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return nil, err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		events := make([]storage.Event, 0, len(keys))
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `DELETE FROM kv WHERE key = ?`, k); err != nil {
				return nil, err
			}
			rev, err := nextRevision(ctx, tx)
			if err != nil {
				return nil, err
			}
			events = append(events, storage.Event{Type: storage.EventDelete, Item: storage.Item{Key: k, Revision: rev}})
		}
		n = len(keys)
		return events, nil
	})
	if err != nil {
		return 0, fmt.Errorf("reap: %w", err)
	}
	return n, nil
}
