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
// origin) and comes back to the loopback listener, and the certificates
// are fetched with a token only this process knows.
func LoginPasskey(ctx context.Context, dir string, opt PasskeyOptions) (*Profile, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if opt.Wait <= 0 {
		opt.Wait = 5 * time.Minute
	}
	c, _, err := TrustCluster(ctx, dir, opt.Proxy, opt.CAPin, opt.Insecure, opt.Out)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	keyPEM, _, pub, err := newKey()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the browser's callback: %w", err)
	}
	defer ln.Close()
	ids := make(chan [2]string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		select {
		case ids <- [2]string{r.URL.Query().Get("id"), r.URL.Query().Get("code")}:
			fmt.Fprintln(w, "Warden: sign-in received. You can close this window and return to the terminal.")
		default:
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintln(w, "Warden: this sign-in was already received.")
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	h, err := c.BeginPasskeyHandoff(ctx, wire.PasskeyHandoffBegin{PublicKey: strings.TrimSpace(string(marshalPub(pub))),
		ClientRedirect: "http://" + ln.Addr().String() + "/callback", TTL: opt.TTL})
	if err != nil {
		return nil, err
	}
	if err := opt.Open(h.URL); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, opt.Wait)
	defer cancel()
	var back [2]string
	select {
	case back = <-ids:
	case <-wctx.Done():
		return nil, errors.New("timed out waiting for the browser to finish signing in")
	}
	if back[0] != h.ID {
		return nil, errors.New("the browser's callback is for another sign-in: start again")
	}
	resp, err := c.ResultPasskey(ctx, wire.PasskeyResultRequest{ID: h.ID, ResultToken: h.ResultToken, Code: back[1]})
	if err != nil {
		return nil, fmt.Errorf("login failed: %v", err)
	}
	return saveLogin(ctx, c, dir, opt.Proxy, keyPEM, pub, resp)
}
