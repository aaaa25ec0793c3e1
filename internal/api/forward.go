package api

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"

	"github.com/warden-sh/warden/internal/auth"
)

// A proxy running apart from auth (`warden start --services proxy`)
// terminates the TLS of users and nodes and forwards their API calls to
// auth over its own mutually authenticated connection. It tells auth who
// the client is in two headers: the client certificate it verified in
// the TLS handshake (HeaderClientCert) and the client's address
// (HeaderClientAddr, on every forwarded request). A request from a proxy
// with either header is a client's, never the proxy's own: without a
// forwarded certificate the client has none (only the proxy's own calls
// carry neither header). Auth believes the headers only on a connection
// whose own verified client certificate is a proxy identity (kind
// "proxy", issued at the proxy's join); on any other connection they are
// refused. The forwarded certificate is verified again against the
// cluster CA, so a proxy can speak only for clients whose certificates it
// was shown.
const (
	HeaderClientCert = "X-Warden-Client-Cert"
	HeaderClientAddr = "X-Warden-Client-Addr"
	// maxForwardedCert bounds the forwarded certificate (base64 of DER).
	maxForwardedCert = 16 << 10
)

// forwardedHeaders reports whether r carries either forwarding header.
func forwardedHeaders(r *http.Request) bool {
	_, cert := r.Header[http.CanonicalHeaderKey(HeaderClientCert)]
	_, addr := r.Header[http.CanonicalHeaderKey(HeaderClientAddr)]
	return cert || addr
}

// peerCert is the connection's verified client certificate (nil if none).
func peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// fromProxy reports whether the connection's verified client certificate
// is a proxy identity.
func fromProxy(r *http.Request) bool {
	leaf := peerCert(r)
	if leaf == nil {
		return false
	}
	c, err := auth.CallerFromTLS(leaf)
	return err == nil && c.Kind == auth.KindProxy
}

// clientCert is the certificate of the client making the call: the
// connection's own, or, from a proxy, the one it forwards.
func (h *Handler) clientCert(r *http.Request) (*x509.Certificate, error) {
	leaf := peerCert(r)
	if leaf == nil {
		return nil, fmt.Errorf("%w: this call needs a client certificate: run warden login", auth.ErrUnauthenticated)
	}
	if !fromProxy(r) || !forwardedHeaders(r) {
		return leaf, nil
	}
	// A request the proxy forwards is its client's, never the proxy's own:
	// without a forwarded certificate, the client showed none.
	v := r.Header.Get(HeaderClientCert)
	if v == "" {
		return nil, fmt.Errorf("%w: this call needs a client certificate: run warden login", auth.ErrUnauthenticated)
	}
	if len(v) > maxForwardedCert {
		return nil, fmt.Errorf("%w: forwarded client certificate too large", auth.ErrUnauthenticated)
	}
	der, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed forwarded client certificate", auth.ErrUnauthenticated)
	}
	fwd, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed forwarded client certificate", auth.ErrUnauthenticated)
	}
	// Verified as the TLS handshake verifies a client's own certificate.
	if _, err := fwd.Verify(x509.VerifyOptions{Roots: h.auth.Authority().CertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: forwarded client certificate: %v", auth.ErrUnauthenticated, err)
	}
	c, err := auth.CallerFromTLS(fwd)
	if err != nil {
		return nil, fmt.Errorf("%w: forwarded client certificate: %v", auth.ErrUnauthenticated, err)
	}
	if c.Kind == auth.KindProxy {
		// A proxy calls auth as itself, never through another proxy.
		return nil, fmt.Errorf("%w: a proxy identity cannot be forwarded", auth.ErrUnauthenticated)
	}
	return fwd, nil
}

// ForwardHeaders sets, on a request a proxy forwards to auth, who the
// client is: its verified certificate (nil: none) and its address. Any
// such headers the client sent itself are replaced.
func ForwardHeaders(h http.Header, clientCert *x509.Certificate, remoteAddr string) {
	h.Del(HeaderClientCert)
	h.Del(HeaderClientAddr)
	if clientCert != nil {
		h.Set(HeaderClientCert, base64.StdEncoding.EncodeToString(clientCert.Raw))
	}
	// Always set: it marks the request as forwarded (clientCert).
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		h.Set(HeaderClientAddr, host)
	} else if remoteAddr != "" {
		h.Set(HeaderClientAddr, remoteAddr)
	} else {
		h.Set(HeaderClientAddr, "unknown")
	}
}
