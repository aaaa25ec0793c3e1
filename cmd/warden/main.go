// Command warden is the single Warden binary: services (warden start) and clients.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/warden-sh/warden/internal/cli"
	"github.com/warden-sh/warden/internal/node"
)

func main() {
	// A node re-executes this binary, as the session's OS user, for helpers
	// such as the SFTP server; those never reach the CLI.
	if node.MaybeRunChild() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
