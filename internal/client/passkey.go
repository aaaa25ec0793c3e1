package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/wire"
)

// PasskeyOptions are the inputs of LoginPasskey.
type PasskeyOptions struct {
	Proxy    string
	TTL      time.Duration
	CAPin    string
	Insecure bool
	// Open is given the sign-in page's URL to show the user (open a
	// browser, or print it); it must not block until the login ends.
	Open func(url string) error
	Out  io.Writer
	// Wait bounds how long the login waits for the browser (default 5m).
	Wait time.Duration
}

// LoginPasskey logs in with a passkey through a browser: a key pair is
// made here, auth keeps its public key and this machine's loopback
// callback under a single-use state and returns the proxy's passkey page;
// the browser signs in there (WebAuthn needs a browser and the proxy's
// origin) and comes back to the loopback listener with a code, and the
// certificates are fetched with that code and a token only this process
// knows.
func LoginPasskey(ctx context.Context, dir string, opt PasskeyOptions) (*Profile, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	c, keyPEM, pub, err := trustAndKey(ctx, dir, opt.Proxy, opt.CAPin, opt.Insecure, opt.Out)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := browserHandoff(ctx, opt.Open, opt.Wait, func(redirect string) (*wire.PasskeyHandoff, error) {
		return c.BeginPasskeyHandoff(ctx, wire.PasskeyHandoffBegin{PublicKey: strings.TrimSpace(string(marshalPub(pub))),
			ClientRedirect: redirect, TTL: opt.TTL})
	})
	if err != nil {
		return nil, err
	}
	resp, err := c.ResultPasskey(ctx, res)
	if err != nil {
		return nil, fmt.Errorf("login failed: %v", err)
	}
	return saveLogin(ctx, c, dir, opt.Proxy, keyPEM, pub, resp)
}

// MFAWithPasskey makes a fresh MFA check with a passkey through a
// browser, as LoginPasskey signs in, and returns the single-use answer
// for the next call of c.
func MFAWithPasskey(ctx context.Context, c *api.Client, open func(url string) error, wait time.Duration) (*wire.MFAResponse, error) {
	res, err := browserHandoff(ctx, open, wait, func(redirect string) (*wire.PasskeyHandoff, error) {
		return c.BeginMFAHandoff(ctx, wire.PasskeyHandoffBegin{ClientRedirect: redirect})
	})
	if err != nil {
		return nil, err
	}
	r, err := c.ResultMFAHandoff(ctx, res)
	if err != nil {
		return nil, fmt.Errorf("MFA check failed: %v", err)
	}
	return r, nil
}

// browserHandoff listens on a loopback port, begins the hand-off with its
// callback URL, shows the page, and waits for the browser to come back:
// it returns what fetches the outcome.
func browserHandoff(ctx context.Context, open func(string) error, wait time.Duration,
	begin func(redirect string) (*wire.PasskeyHandoff, error)) (wire.PasskeyResultRequest, error) {
	var none wire.PasskeyResultRequest
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return none, fmt.Errorf("listen for the browser's callback: %w", err)
	}
	defer ln.Close()
	backs := make(chan [2]string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		select {
		case backs <- [2]string{r.URL.Query().Get("id"), r.URL.Query().Get("code")}:
			fmt.Fprintln(w, "Warden: sign-in received. You can close this window and return to the terminal.")
		default:
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintln(w, "Warden: this sign-in was already received.")
		}
	})}
	go srv.Serve(ln)
	// Shutdown, not Close: the browser's request that brought the code
	// gets its whole answer before the listener goes.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	h, err := begin("http://" + ln.Addr().String() + "/callback")
	if err != nil {
		return none, err
	}
	if err := open(h.URL); err != nil {
		return none, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var back [2]string
	select {
	case back = <-backs:
	case <-wctx.Done():
		return none, errors.New("timed out waiting for the browser to finish")
	}
	if back[0] != h.ID {
		return none, errors.New("the browser's callback is for another sign-in: start again")
	}
	return wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: back[1]}, nil
}
