// Package sqlite is the embedded storage driver: a storage.Backend and an
// audit.Store on one SQLite file, using the pure-Go modernc.org/sqlite.
//
// Writes go through a single connection and a mutex, so revisions are
// assigned and watch events delivered in commit order; reads use a pool of
// read-only connections (WAL lets them run beside the writer). Commits are
// fsynced (synchronous=FULL), so an acknowledged write survives a crash or a
// power loss.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/storage"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DefaultReapInterval is how often expired items are deleted when
// Config.ReapInterval is zero.
const DefaultReapInterval = time.Second

// ErrClosed is returned by operations on a closed Backend.
var ErrClosed = errors.New("sqlite backend closed")

// Config configures Open.
type Config struct {
	// Path is the database file. Its parent directory is created (0700)
	// and the file (0600) if missing.
	Path string
	// Now is the clock used for TTLs and audit timestamps (time.Now if nil).
	Now func() time.Time
	// Logger receives operational logs (discarded if nil).
	Logger *slog.Logger
	// ReapInterval is how often expired items are deleted and their
	// deletes delivered to watchers (DefaultReapInterval if zero).
	ReapInterval time.Duration
	// WatchBuffer is how many undelivered events a watcher may hold
	// before it is considered too slow and its channel is closed
	// (DefaultWatchBuffer if zero).
	WatchBuffer int
}

// Backend is a storage.Backend on a SQLite file. Create it with Open.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	writer *sql.DB // exactly one connection: SQLite has one writer anyway
	reader *sql.DB // read-only pool

	getStmt *sql.Stmt // prepared on reader: Get is the hottest path

	// wmu serialises kv writes and the fan-out of their events, so events
	// reach watchers in commit order.
	wmu sync.Mutex

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}

	closing    chan struct{}      // closed by Close
	stopReaper context.CancelFunc // aborts a reap in progress on Close
	closeOnce  sync.Once
	closeErr   error
	bg         sync.WaitGroup // reaper and watch goroutines
}

var _ storage.Backend = (*Backend)(nil)

// Open opens (creating if needed) the database at cfg.Path, brings its
// schema up to date and starts the expiry reaper.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Path == "" {
		return nil, errors.New("open sqlite storage: empty Path")
	}
	if strings.ContainsRune(cfg.Path, '?') {
		return nil, fmt.Errorf("open sqlite storage: path %q must not contain '?'", cfg.Path)
	}
	if cfg.ReapInterval < 0 {
		return nil, fmt.Errorf("open sqlite storage: negative ReapInterval %v", cfg.ReapInterval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WatchBuffer < 0 {
		return nil, fmt.Errorf("open sqlite storage: negative WatchBuffer %d", cfg.WatchBuffer)
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = DefaultReapInterval
	}
	if err := createFile(cfg.Path); err != nil {
		return nil, fmt.Errorf("open sqlite storage: %w", err)
	}

	writer, err := sql.Open("sqlite", dsn(cfg.Path, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite storage %q: %w", cfg.Path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxIdleTime(0)
	writer.SetConnMaxLifetime(0)

	// journal_mode=WAL is persistent; set it once on the writer before any
	// reader connects so readers never see a rollback journal.
	var mode string
	if err := writer.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite storage %q: enable WAL: %w", cfg.Path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		writer.Close()
		return nil, fmt.Errorf("open sqlite storage %q: journal_mode is %q, want wal", cfg.Path, mode)
	}
	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite storage %q: %w", cfg.Path, err)
	}

	reader, err := sql.Open("sqlite", dsn(cfg.Path, true))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite storage %q: %w", cfg.Path, err)
	}
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open sqlite storage %q: %w", cfg.Path, err)
	}

	getStmt, err := reader.PrepareContext(ctx, `SELECT key, value, revision, expires FROM kv WHERE key = ? AND `+live)
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open sqlite storage %q: prepare: %w", cfg.Path, err)
	}

	b := &Backend{
		getStmt:  getStmt,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "storage.sqlite"),
		writer:   writer,
		reader:   reader,
		watchers: make(map[*watcher]struct{}),
		closing:  make(chan struct{}),
	}
	reapCtx, stop := context.WithCancel(context.Background())
	b.stopReaper = stop
	b.bg.Add(1)
	go b.reapLoop(reapCtx)
	return b, nil
}

// createFile makes the parent directory and the database file with private
// permissions before SQLite opens it (SQLite gives its -wal and -shm files
// the same mode as the database).
func createFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %q: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return nil
}

// dsn builds the modernc.org/sqlite data source name. Every connection
// gets the same pragmas; readers are additionally query_only.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	}
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode()
}

// Close stops the reaper, ends every watch and closes the database.
// It is safe to call more than once.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.stopReaper()
		b.bg.Wait()
		b.watchMu.Lock()
		for w := range b.watchers {
			b.dropWatcherLocked(w)
		}
		b.watchMu.Unlock()
		b.closeErr = errors.Join(b.getStmt.Close(), b.reader.Close(), b.writer.Close())
		if b.closeErr != nil {
			b.closeErr = fmt.Errorf("close sqlite storage %q: %w", b.cfg.Path, b.closeErr)
		}
	})
	return b.closeErr
}

func (b *Backend) closed() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

func (b *Backend) now() time.Time { return b.cfg.Now() }
