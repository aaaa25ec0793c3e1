package client

import (
	"context"
	"fmt"
	"io"
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
// back through the proxy to a listener on this machine's loopback with a
// one-time code, and the certificates are fetched with that code and a
// token only this process knows (someone who got the IdP's link from
// whoever ran this cannot hand their sign-in to them).
func LoginSSO(ctx context.Context, dir string, opt SSOOptions) (*Profile, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	c, keyPEM, pub, err := trustAndKey(ctx, dir, opt.Proxy, opt.CAPin, opt.Insecure, opt.Out)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The same hand-off as --passkey: the browser comes back to a loopback
	// listener with the login id and a one-time code, and the result needs
	// the code as well as the token only this process knows.
	var begin *wire.SSOBeginResponse
	back, err := browserHandoff(ctx, opt.Open, opt.Wait, func(redirect string) (*wire.PasskeyHandoff, error) {
		begin, err = c.BeginOIDC(ctx, wire.SSOBeginRequest{Connector: opt.Connector, PublicKey: strings.TrimSpace(string(marshalPub(pub))),
			ClientRedirect: redirect, TTL: opt.TTL})
		if err != nil {
			return nil, err
		}
		return &wire.PasskeyHandoff{URL: begin.AuthURL, ID: begin.ID, ResultToken: begin.ResultToken}, nil
	})
	if err != nil {
		return nil, err
	}
	resp, err := c.ResultOIDC(ctx, wire.SSOResultRequest{ID: back.ID, ResultToken: back.ResultToken, Code: back.Code})
	if err != nil {
		return nil, fmt.Errorf("login failed: %v", err)
	}
	return saveLogin(ctx, c, dir, opt.Proxy, keyPEM, pub, resp)
}
