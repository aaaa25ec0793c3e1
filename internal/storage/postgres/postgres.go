// Package postgres is the storage driver for clusters that outgrow one
// machine: a storage.Backend and an audit.Store on PostgreSQL (15 or
// later), through github.com/jackc/pgx/v5. Any number of auth instances
// may share one database.
//
// Writes. Every key-value write is one call of a server-side function
// (warden_kv_write) that takes a row lock on the store's revision counter
// first: writes from every instance are serialised there, so revisions are
// gapless and their order is the commit order. Each write also appends a
// row to kv_changes (the change log) and, on commit, a NOTIFY.
//
// Watches. kv_changes is the truth; NOTIFY is only a wake-up (it is not
// durable and carries at most 8000 bytes). One poller per Backend reads the
// change log after the last revision it delivered and fans the events out
// to this process's watchers. A dedicated connection LISTENs; when it
// drops, it reconnects with jittered exponential backoff and the poller
// reads from where it stopped, so nothing is missed. If the changes it
// needs were pruned meanwhile (Config.ChangeKeep), every watcher's channel
// is closed: the consumer re-lists and watches again (the Backend
// contract for a watcher that fell behind).
//
// Audit. One chain for every instance: an append locks the chain's tail row
// (audit_tail), so seqs are gapless and chained in commit order; events of
// one process are group-committed as with SQLite.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/warden-sh/warden/internal/storage"
)

// Defaults for Config's zero values.
const (
	DefaultReapInterval = time.Second
	DefaultWatchBuffer  = 1024
	// DefaultChangeKeep is how many key-value changes are kept for
	// watchers that resume after a lost connection.
	DefaultChangeKeep = 100_000
	// DefaultPollInterval is how often watchers read the change log when
	// no notification woke them (a lost NOTIFY costs at most this).
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultMaxConns bounds the connection pool.
	DefaultMaxConns = 16
	// DefaultRetryWait is how long an operation waits for an unavailable
	// database (restarting, failing over) before it fails.
	DefaultRetryWait = 30 * time.Second
	// DefaultConnectTimeout bounds one connection attempt to one host.
	DefaultConnectTimeout = 5 * time.Second
)

// ErrClosed is returned by operations on a closed Backend.
var ErrClosed = errors.New("postgres backend closed")

// Config configures Open.
type Config struct {
	// URL is the connection string: postgres://user@host:port/db?... or
	// key=value pairs, as libpq takes them (several hosts and
	// target_session_attrs=read-write for a failover pair).
	URL string
	// Password, when not empty, is used instead of one in URL. Read it
	// from a file or the environment: never put it on a command line.
	Password string
	// Now is the clock for TTLs and audit timestamps (time.Now if nil).
	Now func() time.Time
	// Logger receives operational logs (discarded if nil).
	Logger *slog.Logger
	// ReapInterval is how often expired items are deleted
	// (DefaultReapInterval if zero).
	ReapInterval time.Duration
	// WatchBuffer is how many undelivered events a watcher may hold before
	// it is closed as too slow (DefaultWatchBuffer if zero).
	WatchBuffer int
	// ChangeKeep is how many revisions of the change log are kept
	// (DefaultChangeKeep if zero).
	ChangeKeep int64
	// PollInterval is how often the change log is read without a
	// notification (DefaultPollInterval if zero).
	PollInterval time.Duration
	// MaxConns bounds the connection pool (DefaultMaxConns if zero).
	MaxConns int32
	// RetryWait is how long an operation keeps retrying while the
	// database is unavailable (DefaultRetryWait if zero).
	RetryWait time.Duration
}

// Backend is a storage.Backend on PostgreSQL. Create it with Open.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the listener's dedicated connection

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
	pos      int64         // last revision the poller delivered (watchMu)
	posFP    *changeFP     // that change's fingerprint, if read (watchMu)
	pokeKV   chan struct{} // wakes the poller
	paused   chan struct{} // tests: non-nil while the poller is held

	hub *auditHub
	// auditOneTx makes audit appends use a pgx.Tx (five round trips)
	// instead of the pipelined path: the baseline of a benchmark.
	auditOneTx bool

	closing   chan struct{}
	stop      context.CancelFunc
	closeOnce sync.Once
	bg        sync.WaitGroup
}

var _ storage.Backend = (*Backend)(nil)

// Open connects, brings the schema up to date (one instance at a time:
// a migration holds an advisory lock) and starts the poller, the listener
// and the expiry reaper.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.URL == "" {
		return nil, errors.New("open postgres storage: empty URL")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReapInterval < 0 || cfg.WatchBuffer < 0 || cfg.ChangeKeep < 0 || cfg.PollInterval < 0 || cfg.MaxConns < 0 || cfg.RetryWait < 0 {
		return nil, errors.New("open postgres storage: negative setting")
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = DefaultReapInterval
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	if cfg.ChangeKeep == 0 {
		cfg.ChangeKeep = DefaultChangeKeep
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's message may quote the URL, password included: say less.
		return nil, errors.New("open postgres storage: the connection string does not parse")
	}
	if cfg.Password != "" {
		pcfg.ConnConfig.Password = cfg.Password // fallback hosts share it
	}
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "warden"
	}
	pcfg.MaxConns = cfg.MaxConns
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		// A host that does not answer (cut off, not refusing) must not
		// hold a connection attempt, and the next host in the list, for
		// ever.
		pcfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres storage %s: %w", describe(pcfg.ConnConfig), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres storage %s: %w", describe(pcfg.ConnConfig), err)
	}
	b := &Backend{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "storage.postgres"),
		pool:     pool,
		connCfg:  pcfg.ConnConfig.Copy(),
		watchers: make(map[*watcher]struct{}),
		pokeKV:   make(chan struct{}, 1),
		closing:  make(chan struct{}),
	}
	b.hub = newAuditHub()
	if err := pool.QueryRow(ctx, `SELECT rev FROM kv_revision WHERE id = 1`).Scan(&b.pos); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres storage %s: read revision: %w", describe(pcfg.ConnConfig), err)
	}
	bgCtx, stop := context.WithCancel(context.Background())
	b.stop = stop
	b.bg.Add(3)
	go b.pollLoop(bgCtx)
	go b.listenLoop(bgCtx)
	go b.reapLoop(bgCtx)
	return b, nil
}

// describe names the database without its password, for messages.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Close stops the background work, ends every watch and closes the pool.
// It is safe to call more than once.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.stop()
		b.bg.Wait()
		b.watchMu.Lock()
		for w := range b.watchers {
			b.dropWatcherLocked(w)
		}
		b.watchMu.Unlock()
		b.pool.Close()
	})
	return nil
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

// Pool is the connection pool, for tools (warden migrate) and tests.
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }
