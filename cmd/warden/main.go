// Command warden is the single Warden binary: services (warden start) and clients.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/warden-sh/warden/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
