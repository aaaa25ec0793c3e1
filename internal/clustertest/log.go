package clustertest

import (
	"log/slog"
	"os"
	"testing"
)

// quietLogger logs warnings and errors only, unless WARDEN_TEST_DEBUG is set.
func quietLogger(testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WARDEN_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
