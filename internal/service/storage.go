package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/storage/postgres"
	"github.com/warden-sh/warden/internal/storage/sqlite"
)

// Storage types.
const (
	StorageSQLite   = "sqlite"
	StoragePostgres = "postgres"
)

// PasswordEnv is the environment variable the PostgreSQL password is read
// from when storage.password_file is not set (libpq's PGPASSWORD and
// ~/.pgpass work too).
const PasswordEnv = "WARDEN_POSTGRES_PASSWORD"

// StorageConfig says where auth keeps its state and audit log.
type StorageConfig struct {
	// Type is sqlite (the default: DATA/warden.db) or postgres.
	Type string `yaml:"type"`
	// Conn is the PostgreSQL connection string (postgres://user@host/db
	// or key=value pairs); it must not hold the password.
	Conn string `yaml:"conn"`
	// PasswordFile holds the PostgreSQL password (its first line). If
	// empty, WARDEN_POSTGRES_PASSWORD, then libpq's PGPASSWORD or
	// ~/.pgpass, are used.
	PasswordFile string `yaml:"password_file"`
	// RecordingsDir is where session recordings are kept (default
	// DATA/recordings). Auth instances sharing one database share this
	// directory too (a network file system).
	RecordingsDir string `yaml:"recordings_dir"`
}

// checkStorage validates c.Storage and fills its defaults.
func (c *Config) checkStorage() error {
	s := &c.Storage
	switch s.Type {
	case "":
		s.Type = StorageSQLite
	case StorageSQLite, StoragePostgres:
	default:
		return fmt.Errorf("storage type %q: choose sqlite or postgres", s.Type)
	}
	if s.Type == StorageSQLite && (s.Conn != "" || s.PasswordFile != "") {
		return errors.New("storage conn and password_file are for type postgres")
	}
	if s.Type == StoragePostgres {
		if s.Conn == "" {
			return errors.New("storage type postgres needs conn (postgres://user@host:5432/warden)")
		}
		if postgres.HasPassword(s.Conn) {
			return errors.New("storage conn holds a password: put it in password_file or " + PasswordEnv +
				" (a config file is read by more than it should, and logs and process lists show connection strings)")
		}
	}
	if s.RecordingsDir == "" {
		s.RecordingsDir = filepath.Join(c.DataDir, "recordings")
	}
	return nil
}

// storageAuditLog is what auth and the audit sink use of a driver's log.
type storageAuditLog interface {
	audit.Store
	audit.Subscriber
}

// openStorage opens the configured backend and its audit log.
func (p *Process) openStorage(ctx context.Context) (storage.Backend, storageAuditLog, error) {
	s := p.cfg.Storage
	if s.Type == StoragePostgres {
		pw, err := readPassword(s.PasswordFile)
		if err != nil {
			return nil, nil, err
		}
		b, err := postgres.Open(ctx, postgres.Config{URL: s.Conn, Password: pw, Logger: p.log})
		if err != nil {
			return nil, nil, fmt.Errorf("open storage: %w", err)
		}
		return b, b.AuditLog(), nil
	}
	b, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(p.cfg.DataDir, "warden.db"), Logger: p.log})
	if err != nil {
		return nil, nil, fmt.Errorf("open storage: %w", err)
	}
	return b, b.AuditLog(), nil
}

// readPassword reads the password from file, or else the environment
// (empty: libpq's own sources, which pgx reads).
func readPassword(file string) (string, error) {
	if file == "" {
		return os.Getenv(PasswordEnv), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("storage password_file: %w", err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("storage password_file %s is empty", file)
	}
	return pw, nil
}
