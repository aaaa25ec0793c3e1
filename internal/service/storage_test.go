package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStorageConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
		typ             string
	}{
		{name: "default sqlite", yaml: "", typ: StorageSQLite},
		{name: "postgres", yaml: "storage: {type: postgres, conn: \"postgres://warden@db.example:5432/warden\", password_file: /etc/warden/pgpass}\n", typ: StoragePostgres},
		{name: "postgres key=value", yaml: "storage:\n  type: postgres\n  conn: host=db1,db2 user=warden dbname=warden target_session_attrs=read-write\n", typ: StoragePostgres},
		{name: "password in URL", yaml: "storage: {type: postgres, conn: \"postgres://warden:s3cret@db:5432/warden\"}\n", err: "holds a password"},
		{name: "password in query", yaml: "storage: {type: postgres, conn: \"postgres://warden@db/warden?password=s3cret\"}\n", err: "holds a password"},
		{name: "password pair", yaml: "storage: {type: postgres, conn: \"host=db user=warden password=s3cret\"}\n", err: "holds a password"},
		{name: "postgres without conn", yaml: "storage: {type: postgres}\n", err: "needs conn"},
		{name: "conn for sqlite", yaml: "storage: {conn: \"postgres://db/w\"}\n", err: "for type postgres"},
		{name: "unknown type", yaml: "storage: {type: mysql}\n", err: `storage type "mysql"`},
		{name: "unknown field", yaml: "storage: {type: postgres, password: x}\n", err: "field password not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "warden.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if err == nil {
				c.DataDir = t.TempDir()
				c.Node.Name = "n"
				err = c.CheckAndSetDefaults()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Storage.Type != tc.typ || c.Storage.RecordingsDir != filepath.Join(c.DataDir, "recordings") {
				t.Fatalf("storage = %+v", c.Storage)
			}
		})
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "from-env")
	if pw, err := readPassword(file); err != nil || pw != "from-file" {
		t.Fatalf("file: %q, %v", pw, err)
	}
	if pw, err := readPassword(""); err != nil || pw != "from-env" {
		t.Fatalf("env: %q, %v", pw, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPassword(empty); err == nil {
		t.Fatal("an empty password file was accepted")
	}
	if _, err := readPassword(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing password file was accepted")
	}
}
