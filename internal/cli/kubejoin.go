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
)

// observeKube watches a live kube session (kubectl exec/attach) as an
// observer: the proxy, where it lives, streams its terminal output
// (proxy.KubeSessionsPrefix) to the user's Warden certificate.
func (s *session) observeKube(ctx context.Context, id string, out io.Writer) error {
	cred, err := s.p.KubeCredential()
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM)
	if err != nil {
		return err
	}
	caPEM, err := s.p.TLSCAPEM()
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("the profile's TLS CA is unreadable")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair},
		MinVersion: tls.VersionTLS12}}}
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
