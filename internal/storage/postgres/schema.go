package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLock is the advisory lock key that serialises migrations of
// several instances starting at once ("warden" in ASCII).
const migrationLock = 0x77617264656e

// migrations are applied in order; migrations[i] brings the schema from
// version i to version i+1, in one transaction. Never edit a released
// entry: append a new one.
var migrations = []string{
	// 1: key-value state, its revision counter and change log; the audit
	// log, its tail and retention checkpoints.
	`CREATE TABLE kv (
		key      text COLLATE "C" PRIMARY KEY,
		value    bytea NOT NULL,
		revision bigint NOT NULL,
		expires  bigint NULL -- unix ns
	);
	CREATE INDEX kv_expires ON kv (expires) WHERE expires IS NOT NULL;
	CREATE TABLE kv_revision (
		id  int PRIMARY KEY CHECK (id = 1),
		rev bigint NOT NULL
	);
	INSERT INTO kv_revision (id, rev) VALUES (1, 0);
	-- One row per revision: what watchers read. type 1 put, 2 delete.
	CREATE TABLE kv_changes (
		rev     bigint PRIMARY KEY,
		type    smallint NOT NULL,
		key     text COLLATE "C" NOT NULL,
		value   bytea NULL,
		expires bigint NULL
	);

	-- warden_kv_write is every key-value write: op 0 put, 1 create,
	-- 2 compare-and-swap (p_rev), 3 delete. It returns the new revision,
	-- or -1 (exists), -2 (not found), -3 (compare failed) having written
	-- nothing. The revision row's lock serialises writers: revision order
	-- is commit order, and a failed write consumes no revision.
	CREATE FUNCTION warden_kv_write(p_op int, p_key text, p_value bytea, p_expires bigint, p_rev bigint, p_now bigint)
	RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE
		cur bigint;
		r   bigint;
	BEGIN
		PERFORM 1 FROM kv_revision WHERE id = 1 FOR UPDATE;
		SELECT revision INTO cur FROM kv WHERE key = p_key AND (expires IS NULL OR expires > p_now);
		IF p_op = 1 AND FOUND THEN RETURN -1; END IF;
		IF p_op IN (2, 3) AND NOT FOUND THEN RETURN -2; END IF;
		IF p_op = 2 AND cur <> p_rev THEN RETURN -3; END IF;
		UPDATE kv_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev INTO r;
		IF p_op = 3 THEN
			DELETE FROM kv WHERE key = p_key;
			INSERT INTO kv_changes (rev, type, key) VALUES (r, 2, p_key);
		ELSE
			INSERT INTO kv (key, value, revision, expires) VALUES (p_key, p_value, r, p_expires)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires;
			INSERT INTO kv_changes (rev, type, key, value, expires) VALUES (r, 1, p_key, p_value, p_expires);
		END IF;
		PERFORM pg_notify('warden_kv', r::text);
		RETURN r;
	END $$;

	-- warden_kv_reap deletes up to p_limit items expired at p_now, one
	-- revision and change each, and prunes the change log to p_keep
	-- revisions. It returns how many items it deleted.
	CREATE FUNCTION warden_kv_reap(p_now bigint, p_limit int, p_keep bigint)
	RETURNS int LANGUAGE plpgsql AS $$
	DECLARE
		k text;
		r bigint;
		n int := 0;
	BEGIN
		PERFORM 1 FROM kv_revision WHERE id = 1 FOR UPDATE;
		FOR k IN SELECT key FROM kv WHERE expires IS NOT NULL AND expires <= p_now ORDER BY expires, key LIMIT p_limit LOOP
			UPDATE kv_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev INTO r;
			DELETE FROM kv WHERE key = k;
			INSERT INTO kv_changes (rev, type, key) VALUES (r, 2, k);
			n := n + 1;
		END LOOP;
		IF n > 0 THEN
			PERFORM pg_notify('warden_kv', r::text);
		END IF;
		DELETE FROM kv_changes WHERE rev <= (SELECT rev FROM kv_revision WHERE id = 1) - p_keep;
		RETURN n;
	END $$;

	CREATE TABLE audit_events (
		seq        bigint PRIMARY KEY,
		id         text NOT NULL UNIQUE,
		time       bigint NOT NULL, -- unix ns
		event      text NOT NULL,
		"user"     text NOT NULL DEFAULT '',
		node       text NOT NULL DEFAULT '',
		session_id text NOT NULL DEFAULT '',
		body       bytea NOT NULL, -- canonical JSON, exactly the hashed bytes
		prev_hash  bytea NULL,
		hash       bytea NULL
	);
	CREATE INDEX audit_events_event_time ON audit_events (event, time);
	CREATE INDEX audit_events_user_time ON audit_events ("user", time);
	CREATE INDEX audit_events_node_time ON audit_events (node, time);
	CREATE INDEX audit_events_session ON audit_events (session_id);
	CREATE INDEX audit_events_user_seq ON audit_events ("user", seq);
	-- The chain's tail: the last seq assigned and its hash. Appenders
	-- lock this row, so one chain runs through every instance's events.
	CREATE TABLE audit_tail (
		id   int PRIMARY KEY CHECK (id = 1),
		seq  bigint NOT NULL,
		hash bytea NULL
	);
	INSERT INTO audit_tail (id, seq, hash) VALUES (1, 0, NULL);
	CREATE TABLE audit_checkpoints (
		seq   bigint PRIMARY KEY, -- last event deleted
		hash  bytea NOT NULL,     -- its hash: the next event's prev_hash
		time  bigint NOT NULL,    -- when (unix ns)
		count bigint NOT NULL     -- events deleted
	);`,

	// 2: key-value writes carry an id, so that a write retried after a
	// lost connection (did it commit?) finds itself done instead of
	// applying twice (or failing a Create or CAS it had itself satisfied).
	`ALTER TABLE kv_changes ADD COLUMN write_id text NULL;
	CREATE UNIQUE INDEX kv_changes_write_id ON kv_changes (write_id) WHERE write_id IS NOT NULL;
	-- As version 1's, plus p_write_id: when a change with that id is in the
	-- change log (looked up under the revision lock, so a first attempt
	-- still running is waited for), its revision is returned and nothing
	-- is written.
	CREATE FUNCTION warden_kv_write(p_op int, p_key text, p_value bytea, p_expires bigint, p_rev bigint, p_now bigint, p_write_id text)
	RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE
		cur bigint;
		r   bigint;
	BEGIN
		PERFORM 1 FROM kv_revision WHERE id = 1 FOR UPDATE;
		SELECT rev INTO r FROM kv_changes WHERE write_id = p_write_id;
		IF FOUND THEN RETURN r; END IF;
		SELECT revision INTO cur FROM kv WHERE key = p_key AND (expires IS NULL OR expires > p_now);
		IF p_op = 1 AND FOUND THEN RETURN -1; END IF;
		IF p_op IN (2, 3) AND NOT FOUND THEN RETURN -2; END IF;
		IF p_op = 2 AND cur <> p_rev THEN RETURN -3; END IF;
		UPDATE kv_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev INTO r;
		IF p_op = 3 THEN
			DELETE FROM kv WHERE key = p_key;
			INSERT INTO kv_changes (rev, type, key, write_id) VALUES (r, 2, p_key, p_write_id);
		ELSE
			INSERT INTO kv (key, value, revision, expires) VALUES (p_key, p_value, r, p_expires)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires;
			INSERT INTO kv_changes (rev, type, key, value, expires, write_id) VALUES (r, 1, p_key, p_value, p_expires, p_write_id);
		END IF;
		PERFORM pg_notify('warden_kv', r::text);
		RETURN r;
	END $$;`,
}

// schemaVersion is the version this code expects after migrate.
var schemaVersion = len(migrations)

// migrate brings the schema to schemaVersion under an advisory lock, one
// transaction per version, and refuses a database written by a newer
// Warden or one that does not store text as UTF-8.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var enc string
	if err := conn.QueryRow(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		return fmt.Errorf("read server_encoding: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("database encoding is %s: Warden needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8')", enc)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock)) //nolint:errcheck // the session ends with the pool otherwise
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS warden_schema (version int NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create warden_schema: %w", err)
	}
	for {
		done, err := migrateStep(ctx, conn.Conn())
		if err != nil || done {
			return err
		}
	}
}

func migrateStep(ctx context.Context, conn *pgx.Conn) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	var v int
	switch err := tx.QueryRow(ctx, `SELECT version FROM warden_schema`).Scan(&v); {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO warden_schema (version) VALUES (0)`); err != nil {
			return false, fmt.Errorf("migrate: init warden_schema: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("migrate: read warden_schema: %w", err)
	}
	if v > schemaVersion {
		return false, fmt.Errorf("migrate: database schema version %d is newer than this program's %d", v, schemaVersion)
	}
	if v == schemaVersion {
		return true, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate: apply version %d: %w", v+1, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE warden_schema SET version = $1`, v+1); err != nil {
		return false, fmt.Errorf("migrate: record version %d: %w", v+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrate: commit version %d: %w", v+1, err)
	}
	return false, nil
}
