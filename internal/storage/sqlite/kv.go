package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// live is the SQL condition for an item that has not expired at ?.
const live = `(expires IS NULL OR expires > ?)`

// Get returns the live item at key or storage.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, fmt.Errorf("get: %w", err)
	}
	if b.closed() {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, ErrClosed)
	}
	row := b.getStmt.QueryRowContext(ctx, key, b.now().UnixNano())
	it, err := scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, err)
	}
	return it, nil
}

// List returns the live items whose key starts with prefix, ordered by key.
func (b *Backend) List(ctx context.Context, prefix string, limit int) ([]storage.Item, error) {
	if b.closed() {
		return nil, fmt.Errorf("list %q: %w", prefix, ErrClosed)
	}
	q := `SELECT key, value, revision, expires FROM kv WHERE key >= ? AND ` + live
	args := []any{prefix, b.now().UnixNano()}
	if end, ok := storage.PrefixEnd(prefix); ok {
		q += ` AND key < ?`
		args = append(args, end)
	}
	q += ` ORDER BY key`
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := b.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	defer rows.Close()
	var items []storage.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
		// The range scan is exact for byte order; the check guards
		// against a collation surprise ever leaking foreign keys.
		if strings.HasPrefix(it.Key, prefix) {
			items = append(items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return items, nil
}

// Create stores it only if no live item exists at its key.
func (b *Backend) Create(ctx context.Context, it storage.Item) (storage.Item, error) {
	if err := storage.ValidateItem(it); err != nil {
		return storage.Item{}, fmt.Errorf("create: %w", err)
	}
	var out storage.Item
	err := b.write(ctx, func(tx *sql.Tx, now int64) ([]storage.Event, error) {
		var exists bool
		err := tx.QueryRowContext(ctx,
			`SELECT 1 FROM kv WHERE key = ? AND `+live, it.Key, now).Scan(&exists)
		if err == nil {
			return nil, storage.ErrAlreadyExists
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		// An expired row not yet reaped is simply replaced.
		out, err = upsert(ctx, tx, it)
		if err != nil {
			return nil, err
		}
		return []storage.Event{{Type: storage.EventPut, Item: out}}, nil
	})
	if err != nil {
		return storage.Item{}, fmt.Errorf("create %q: %w", it.Key, err)
	}
	return out, nil
}

// Put creates or replaces it.
func (b *Backend) Put(ctx context.Context, it storage.Item) (storage.Item, error) {
	if err := storage.ValidateItem(it); err != nil {
		return storage.Item{}, fmt.Errorf("put: %w", err)
	}
	var out storage.Item
	err := b.write(ctx, func(tx *sql.Tx, _ int64) ([]storage.Event, error) {
		var err error
		out, err = upsert(ctx, tx, it)
		if err != nil {
			return nil, err
		}
		return []storage.Event{{Type: storage.EventPut, Item: out}}, nil
	})
	if err != nil {
		return storage.Item{}, fmt.Errorf("put %q: %w", it.Key, err)
	}
	return out, nil
}

// CompareAndSwap replaces the live item at it.Key only if its revision is rev.
func (b *Backend) CompareAndSwap(ctx context.Context, rev int64, it storage.Item) (storage.Item, error) {
	if err := storage.ValidateItem(it); err != nil {
		return storage.Item{}, fmt.Errorf("compare and swap: %w", err)
	}
	var out storage.Item
	err := b.write(ctx, func(tx *sql.Tx, now int64) ([]storage.Event, error) {
		var cur int64
		err := tx.QueryRowContext(ctx,
			`SELECT revision FROM kv WHERE key = ? AND `+live, it.Key, now).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, storage.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		if cur != rev {
			return nil, storage.ErrCompareFailed
		}
		out, err = upsert(ctx, tx, it)
		if err != nil {
			return nil, err
		}
		return []storage.Event{{Type: storage.EventPut, Item: out}}, nil
	})
	if err != nil {
		return storage.Item{}, fmt.Errorf("compare and swap %q at revision %d: %w", it.Key, rev, err)
	}
	return out, nil
}

// Delete removes the live item at key; the delete consumes a revision.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	err := b.write(ctx, func(tx *sql.Tx, now int64) ([]storage.Event, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM kv WHERE key = ? AND `+live, key, now)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			return nil, storage.ErrNotFound
		}
		rev, err := nextRevision(ctx, tx)
		if err != nil {
			return nil, err
		}
		return []storage.Event{{Type: storage.EventDelete, Item: storage.Item{Key: key, Revision: rev}}}, nil
	})
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// write runs fn in an immediate transaction under the write lock and, once
// the transaction has committed, hands fn's events to the watchers. fn gets
// the current time in Unix nanoseconds for liveness checks.
func (b *Backend) write(ctx context.Context, fn func(tx *sql.Tx, now int64) ([]storage.Event, error)) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed() {
		return ErrClosed
	}
	tx, err := b.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	events, err := fn(tx, b.now().UnixNano())
	if err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			b.log.WarnContext(ctx, "rollback failed", "err", rbErr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	b.broadcast(events)
	return nil
}

// upsert writes it with a fresh revision and returns what was stored. The
// returned item owns a private copy of the value.
func upsert(ctx context.Context, tx *sql.Tx, it storage.Item) (storage.Item, error) {
	rev, err := nextRevision(ctx, tx)
	if err != nil {
		return storage.Item{}, err
	}
	out := storage.Item{Key: it.Key, Value: cloneValue(it.Value), Revision: rev}
	var expires any // NULL
	if !it.Expires.IsZero() {
		out.Expires = time.Unix(0, it.Expires.UnixNano()).UTC()
		expires = it.Expires.UnixNano()
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO kv (key, value, revision, expires) VALUES (?, ?, ?, ?)
		 ON CONFLICT (key) DO UPDATE SET
		   value = excluded.value, revision = excluded.revision, expires = excluded.expires`,
		out.Key, out.Value, out.Revision, expires)
	if err != nil {
		return storage.Item{}, fmt.Errorf("upsert: %w", err)
	}
	return out, nil
}

// nextRevision consumes and returns the next store-wide revision.
func nextRevision(ctx context.Context, tx *sql.Tx) (int64, error) {
	var rev int64
	if err := tx.QueryRowContext(ctx,
		`UPDATE kv_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("next revision: %w", err)
	}
	return rev, nil
}

// cloneValue copies v; a nil or empty value is stored as an empty blob.
func cloneValue(v []byte) []byte {
	out := make([]byte, len(v))
	copy(out, v)
	return out
}

type scanner interface{ Scan(dest ...any) error }

func scanItem(s scanner) (storage.Item, error) {
	var (
		it      storage.Item
		expires sql.NullInt64
	)
	if err := s.Scan(&it.Key, &it.Value, &it.Revision, &expires); err != nil {
		return storage.Item{}, err
	}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if expires.Valid {
		it.Expires = time.Unix(0, expires.Int64).UTC()
	}
	return it, nil
}
