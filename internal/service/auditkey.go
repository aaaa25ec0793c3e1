package service

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/warden-sh/warden/internal/audit"
)

// loadOrCreateAuditKey reads the audit checkpoint signing key at path
// (PKCS#8 PEM), making it (0600) if the file does not exist.
func loadOrCreateAuditKey(path string, log *slog.Logger) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createAuditKey(path, log)
	}
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s: %T is not an Ed25519 key", path, k)
	}
	return key, nil
}

func createAuditKey(path string, log *slog.Logger) (ed25519.PrivateKey, error) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	// O_EXCL: never replace a key another process just made.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateAuditKey(path, log)
	}
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	_, werr := f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	log.Info("generated the audit checkpoint signing key; export its public key with warden audit export-key and keep it elsewhere",
		"path", path, "key_id", audit.KeyID(pub))
	return key, nil
}
