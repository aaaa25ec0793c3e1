package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/warden-sh/warden/internal/storage"
)

// Operations of warden_kv_write.
const (
	opPut    = 0
	opCreate = 1
	opCAS    = 2
	opDelete = 3
)

// Results of warden_kv_write below zero.
const (
	resExists     = -1
	resNotFound   = -2
	resCompareBad = -3
)

// Get returns the live item at key or storage.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, fmt.Errorf("get: %w", err)
	}
	if b.closed() {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, ErrClosed)
	}
	var it storage.Item
	err := b.retryIdempotent(ctx, func() error {
		var err error
		it, err = scanItem(b.pool.QueryRow(ctx,
			`SELECT key, value, revision, expires FROM kv WHERE key = $1 AND (expires IS NULL OR expires > $2)`,
			key, b.now().UnixNano()))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Item{}, fmt.Errorf("get %q: %w", key, err)
	}
	return it, nil
}

// List returns the live items whose key starts with prefix, ordered by key
// (byte order: the key column has the "C" collation).
func (b *Backend) List(ctx context.Context, prefix string, limit int) ([]storage.Item, error) {
	if b.closed() {
		return nil, fmt.Errorf("list %q: %w", prefix, ErrClosed)
	}
	q := `SELECT key, value, revision, expires FROM kv WHERE key >= $1 AND (expires IS NULL OR expires > $2)`
	args := []any{prefix, b.now().UnixNano()}
	if end, ok := storage.PrefixEnd(prefix); ok && !strings.ContainsRune(end, 0) && validUTF8End(end) {
		q += ` AND key < $3`
		args = append(args, end)
	}
	q += ` ORDER BY key`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	var items []storage.Item
	err := b.retryIdempotent(ctx, func() error {
		items = items[:0]
		rows, err := b.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scanItem(rows)
			if err != nil {
				return err
			}
			if strings.HasPrefix(it.Key, prefix) {
				items = append(items, it)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return items, nil
}

// validUTF8End reports whether end, a PrefixEnd bound, can be sent as
// text: the bound of a prefix ending inside a multi-byte character is not
// UTF-8, and the scan is then bounded by the prefix check alone.
func validUTF8End(end string) bool {
	return strings.ToValidUTF8(end, "\uFFFD") == end
}

// Create stores it only if no live item exists at its key.
func (b *Backend) Create(ctx context.Context, it storage.Item) (storage.Item, error) {
	if err := storage.ValidateItem(it); err != nil {
		return storage.Item{}, fmt.Errorf("create: %w", err)
	}
	out, err := b.write(ctx, opCreate, it, 0)
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
	out, err := b.write(ctx, opPut, it, 0)
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
	out, err := b.write(ctx, opCAS, it, rev)
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
	if _, err := b.write(ctx, opDelete, storage.Item{Key: key}, 0); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// write runs one warden_kv_write: a single statement, its own transaction.
func (b *Backend) write(ctx context.Context, op int, it storage.Item, rev int64) (storage.Item, error) {
	if b.closed() {
		return storage.Item{}, ErrClosed
	}
	out := storage.Item{Key: it.Key}
	var expires *int64
	if op != opDelete {
		out.Value = make([]byte, len(it.Value))
		copy(out.Value, it.Value)
		if !it.Expires.IsZero() {
			ns := it.Expires.UnixNano()
			expires = &ns
			out.Expires = time.Unix(0, ns).UTC()
		}
	}
	// The write's id makes it idempotent: retried after a lost connection
	// (did it commit?), the function finds its change and returns its
	// revision instead of writing again.
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return storage.Item{}, err
	}
	writeID := hex.EncodeToString(id[:])
	var res int64
	err := b.retryIdempotent(ctx, func() error {
		return b.pool.QueryRow(ctx, `SELECT warden_kv_write($1, $2, $3, $4, $5, $6, $7)`,
			op, it.Key, out.Value, expires, rev, b.now().UnixNano(), writeID).Scan(&res)
	})
	switch {
	case err != nil:
		return storage.Item{}, err
	case res == resExists:
		return storage.Item{}, storage.ErrAlreadyExists
	case res == resNotFound:
		return storage.Item{}, storage.ErrNotFound
	case res == resCompareBad:
		return storage.Item{}, storage.ErrCompareFailed
	}
	out.Revision = res
	b.poke() // this process's watchers need not wait for the NOTIFY
	return out, nil
}

// retryIdempotent runs fn again while the database is away: fn failed
// before its statement ran (nothing reached the server, the server ended
// the session before running it: what a restart does to every pooled
// connection), or no server could be reached (down, restarting, failing
// over: a connection refused, or no host of a failover list writable yet),
// or the connection was lost after the statement was sent, when nobody can
// tell whether it committed. fn must have the same effect run twice as once:
// a read, or a write that carries its own id and finds itself done (every
// write here does). It retries with jittered exponential backoff for at
// most Config.RetryWait, then returns the last error.
func (b *Backend) retryIdempotent(ctx context.Context, fn func() error) error {
	return b.retryWith(ctx, transient, fn)
}

func (b *Backend) retryWith(ctx context.Context, again func(error) bool, fn func() error) error {
	deadline := time.Now().Add(b.cfg.RetryWait)
	backoff := 25 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !again(err) || ctx.Err() != nil || b.closed() {
			return err
		}
		// Every pooled connection is presumed dead: those in use are
		// closed when they are released.
		b.pool.Reset()
		wait := backoff/2 + mrand.N(backoff/2+1)
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("database unavailable for %s (%d attempts): %w", b.cfg.RetryWait, attempt, err)
		}
		if attempt == 1 {
			b.log.Warn("database unavailable; retrying", "for_at_most", b.cfg.RetryWait, "err", err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return ErrClosed
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryable reports whether err says the statement did not run.
func retryable(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true // no session: nothing was sent
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		}
	}
	return false
}

// transient reports whether err is the database going away or not being
// there (the statement may or may not have run): a lost connection, a
// server shutting down, or a read-only server (a standby not promoted
// yet, reached without target_session_attrs=read-write).
func transient(err error) bool {
	if retryable(err) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "25006" // connection_exception, read_only_sql_transaction
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func scanItem(row pgx.Row) (storage.Item, error) {
	var (
		it      storage.Item
		expires *int64
	)
	if err := row.Scan(&it.Key, &it.Value, &it.Revision, &expires); err != nil {
		return storage.Item{}, err
	}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if expires != nil {
		it.Expires = time.Unix(0, *expires).UTC()
	}
	return it, nil
}
