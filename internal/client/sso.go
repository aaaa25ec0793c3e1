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

// SSOOptions are the inputs of LoginSSO.
type SSOOptions struct {
	Proxy     string
	Connector string
	TTL       time.Duration
	CAPin     string
	Insecure  bool
	// Open is given the IdP's URL to show the user (open a browser, or
	// print it); it must not block until the login ends.
	Open func(url string) error
	// Out receives notices.
	Out io.Writer
	// Wait bounds how long the login waits for the browser (default 5m).
	Wait time.Duration
}

// LoginSSO logs in through an SSO connector: a key pair is made here, auth
// returns the IdP's URL (authorization code flow with PKCE, state and
// nonce, all kept by auth), the browser signs in with the IdP and comes
// back through the proxy to a listener on this machine's loopback, and
// the certificates are fetched with a token only this process knows.
func LoginSSO(ctx context.Context, dir string, opt SSOOptions) (*Profile, error) {
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
		return nil, fmt.Errorf("listen for the SSO callback: %w", err)
	}
	defer ln.Close()
	ids := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		select {
		case ids <- r.URL.Query().Get("id"):
			fmt.Fprintln(w, "Warden: sign-in received. You can close this window and return to the terminal.")
		default:
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintln(w, "Warden: this sign-in was already received.")
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	begin, err := c.BeginOIDC(ctx, wire.SSOBeginRequest{Connector: opt.Connector, PublicKey: strings.TrimSpace(string(marshalPub(pub))),
		ClientRedirect: "http://" + ln.Addr().String() + "/callback", TTL: opt.TTL})
	if err != nil {
		return nil, err
	}
	if err := opt.Open(begin.AuthURL); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, opt.Wait)
	defer cancel()
	var id string
	select {
	case id = <-ids:
	case <-wctx.Done():
		return nil, errors.New("timed out waiting for the browser to finish signing in")
	}
	if id != begin.ID {
		return nil, errors.New("the SSO callback is for another login: start again")
	}
	resp, err := c.ResultOIDC(ctx, wire.SSOResultRequest{ID: id, ResultToken: begin.ResultToken})
	if err != nil {
		return nil, fmt.Errorf("login failed: %v", err)
	}
	return saveLogin(ctx, c, dir, opt.Proxy, keyPEM, pub, resp)
}
