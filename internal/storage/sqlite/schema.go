package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// version i to version i+1. Never edit a released entry: append a new one.
var migrations = []string{
	// 1: key-value state store and its revision counter.
	`CREATE TABLE kv (
		key      TEXT PRIMARY KEY NOT NULL,
		value    BLOB NOT NULL,
		revision INTEGER NOT NULL,
		expires  INTEGER NULL
	) WITHOUT ROWID;
	CREATE INDEX kv_expires ON kv (expires) WHERE expires IS NOT NULL;
	CREATE TABLE kv_revision (
		id  INTEGER PRIMARY KEY CHECK (id = 1),
		rev INTEGER NOT NULL
	);
	INSERT INTO kv_revision (id, rev) VALUES (1, 0);`,

	// 2: audit log.
	`CREATE TABLE audit_events (
		seq        INTEGER PRIMARY KEY AUTOINCREMENT,
		id         TEXT NOT NULL UNIQUE,
		time       INTEGER NOT NULL,
		event      TEXT NOT NULL,
		user       TEXT NOT NULL DEFAULT '',
		node       TEXT NOT NULL DEFAULT '',
		session_id TEXT NOT NULL DEFAULT '',
		body       TEXT NOT NULL
	);
	CREATE INDEX audit_events_event_time ON audit_events (event, time);
	CREATE INDEX audit_events_user_time ON audit_events (user, time);
	CREATE INDEX audit_events_node_time ON audit_events (node, time);
	CREATE INDEX audit_events_session ON audit_events (session_id);`,

	// 3: audit hash chain (see audit.ChainHash) and retention checkpoints.
	// Rows written before this version are chained by this migration's
	// hook (chainLegacyRows), in the same transaction.
	`ALTER TABLE audit_events ADD COLUMN prev_hash BLOB;
	ALTER TABLE audit_events ADD COLUMN hash BLOB;
	CREATE TABLE audit_checkpoints (
		seq   INTEGER PRIMARY KEY NOT NULL, -- last event deleted
		hash  BLOB NOT NULL,                -- its hash: the next event's prev_hash
		time  INTEGER NOT NULL,             -- when (unix ns)
		count INTEGER NOT NULL              -- events deleted
	);
	-- Paging one user's events by seq (AfterSeq) without sorting them all.
	CREATE INDEX audit_events_user_seq ON audit_events (user, seq);`,
}

// migrationHooks run after the SQL of a migration, in its transaction,
// keyed by the version the migration brings the schema to.
var migrationHooks = map[int]func(context.Context, *sql.Tx) error{
	3: chainLegacyRows,
}

// schemaVersion is the version this code expects after migrate.
var schemaVersion = len(migrations)

// migrate brings the database schema to schemaVersion, one transaction per
// step, and refuses a database written by a newer version of Warden.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for {
		done, err := migrateStep(ctx, db)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func migrateStep(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit

	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return false, fmt.Errorf("migrate: init schema_version: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("migrate: read schema_version: %w", err)
	}
	if v > schemaVersion {
		return false, fmt.Errorf("migrate: database schema version %d is newer than this program's %d", v, schemaVersion)
	}
	if v == schemaVersion {
		return true, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate: apply version %d: %w", v+1, err)
	}
	if hook := migrationHooks[v+1]; hook != nil {
		if err := hook(ctx, tx); err != nil {
			return false, fmt.Errorf("migrate: apply version %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
		return false, fmt.Errorf("migrate: record version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate: commit version %d: %w", v+1, err)
	}
	return false, nil
}
