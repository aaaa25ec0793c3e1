package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/coder/websocket"
	"golang.org/x/term"
)

// kubeJoinClient is an HTTPS client to the proxy with the user's Warden
// certificate.
func (s *session) kubeJoinClient() (*http.Client, error) {
	cred, err := s.p.KubeCredential()
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM)
	if err != nil {
		return nil, err
	}
	caPEM, err := s.p.TLSCAPEM()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the profile's TLS CA is unreadable")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair},
		MinVersion: tls.VersionTLS12}}}, nil
}

// observeKube watches a live kube session (kubectl exec/attach) as an
// observer: the proxy, where it lives, streams its terminal output
// (proxy.KubeSessionsPrefix) to the user's Warden certificate.
func (s *session) observeKube(ctx context.Context, id string, out io.Writer) error {
	hc, err := s.kubeJoinClient()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.p.Proxy+"/kube-sessions/"+url.PathEscape(id)+"?mode=observer", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var st struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if json.Unmarshal(b, &st) != nil || st.Message == "" {
			st.Message = resp.Status
		}
		return errors.New(st.Message)
	}
	_, err = io.Copy(out, resp.Body)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("watching session %s: %w", id, err)
	}
	return nil
}

// peerKube joins a live kube session as a peer: over a WebSocket to the
// proxy, the session's output to out, and what is typed on in (until
// Ctrl-], or its end) into the session's stdin. On a terminal, in is put
// in raw mode, as warden ssh does.
func (s *session) peerKube(ctx context.Context, id string, in io.Reader, out io.Writer) error {
	hc, err := s.kubeJoinClient()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	conn, resp, err := websocket.Dial(ctx, "wss://"+s.p.Proxy+"/kube-sessions/"+url.PathEscape(id)+"?mode=peer",
		&websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.Body != nil {
			var st struct{ Message string }
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
			if json.Unmarshal(b, &st) == nil && st.Message != "" {
				return errors.New(st.Message)
			}
		}
		return fmt.Errorf("joining session %s: %w", id, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		state, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer func() { _ = term.Restore(int(f.Fd()), state) }()
	}
	in = &escapeReader{r: in}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// What is typed, until Ctrl-] (escapeReader) or the end of input:
		// then the joiner leaves.
		defer cancel()
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if werr := conn.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = conn.Close(websocket.StatusNormalClosure, "left")
				return
			}
		}
	}()
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if reason := websocket.CloseStatus(err); reason != -1 {
				var ce websocket.CloseError
				if errors.As(err, &ce) && ce.Reason != "" {
					fmt.Fprintf(out, "\r\n%s\r\n", ce.Reason)
				}
				return nil
			}
			return fmt.Errorf("session %s: %w", id, err)
		}
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
}
