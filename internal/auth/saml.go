package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// SAMLConnector is wire.SAMLConnector.
type SAMLConnector = wire.SAMLConnector

const (
	prefixSAML        = "/connectors/saml/"
	prefixSAMLKey     = "/connectors/saml-keys/" // the SP signing key, apart from the connector
	prefixSAMLPending = "/sso/saml-pending/"     // by the hash of the RelayState; TTL ssoPendingTTL
	prefixSAMLSeen    = "/sso/saml-assertions/"  // connector/hash of the assertion ID; until it expires
	samlMetadataTTL   = 10 * time.Minute         // how long fetched IdP metadata is used
	samlRefetchAfter  = 30 * time.Second         // a signature failure refetches metadata older than this
	samlSkew          = time.Minute              // clock skew allowed between auth and the IdP
	samlPathPrefix    = "/v1/sso/saml/"          // + NAME + /metadata or /acs
	samlKeyBits       = 2048
	samlCertLifetime  = 10 * 365 * 24 * time.Hour
)

// MaxSAMLResponse bounds the SAMLResponse form value (base64): real ones
// are a few KiB.
const MaxSAMLResponse = 256 << 10

// UpsertSAMLConnector creates or replaces a SAML connector. With
// sign_requests, the first apply makes the SP signing key (RSA, with a
// self-signed certificate) and keeps it apart from the connector.
func (s *Server) UpsertSAMLConnector(ctx context.Context, c Caller, conn *SAMLConnector) error {
	if err := s.authorize(c, "UpsertSAMLConnector"); err != nil {
		return err
	}
	if err := conn.Validate(); err != nil {
		return badRequest("connector %q: %v", conn.Metadata.Name, err)
	}
	if conn.Spec.IdPMetadataXML != "" {
		if _, err := ParseIdPMetadata([]byte(conn.Spec.IdPMetadataXML)); err != nil {
			return badRequest("connector %q: idp_metadata_xml: %v", conn.Metadata.Name, err)
		}
	}
	for _, m := range conn.Spec.AttributesToRoles {
		if err := s.checkUserRoles(ctx, m.Roles); err != nil {
			return err
		}
	}
	if _, err := s.b.Get(ctx, prefixOIDC+conn.Metadata.Name); err == nil {
		return badRequest("connector %q: an oidc connector has this name", conn.Metadata.Name)
	}
	if conn.Spec.SignRequests {
		if err := s.ensureSAMLKey(ctx, conn.Metadata.Name); err != nil {
			return err
		}
	}
	key := prefixSAML + conn.Metadata.Name
	_, getErr := s.b.Get(ctx, key)
	if err := s.putJSON(ctx, key, conn, time.Time{}); err != nil {
		return fmt.Errorf("store connector: %w", err)
	}
	s.samlMeta.forget(conn.Metadata.Name)
	op := "updated"
	if errors.Is(getErr, storage.ErrNotFound) {
		op = "created"
	}
	s.emit(ctx, audit.Event{Event: audit.ConnectorApply, User: c.Name(), Success: true,
		Fields: map[string]any{"connector": conn.Metadata.Name, "kind": wire.KindSAML, "operation": op}})
	return nil
}

// GetSAMLConnector returns one SAML connector (never its signing key).
func (s *Server) GetSAMLConnector(ctx context.Context, c Caller, name string) (*SAMLConnector, error) {
	if err := s.authorize(c, "GetSAMLConnector"); err != nil {
		return nil, err
	}
	return s.samlConnector(ctx, name)
}

func (s *Server) samlConnector(ctx context.Context, name string) (*SAMLConnector, error) {
	var conn SAMLConnector
	if err := s.getJSON(ctx, prefixSAML+name, &conn); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("saml connector %q: %w", name, storage.ErrNotFound)
		}
		return nil, err
	}
	return &conn, nil
}

// ListSAMLConnectors lists the SAML connectors.
func (s *Server) ListSAMLConnectors(ctx context.Context, c Caller) ([]*SAMLConnector, error) {
	if err := s.authorize(c, "ListSAMLConnectors"); err != nil {
		return nil, err
	}
	return s.listSAMLConnectors(ctx)
}

func (s *Server) listSAMLConnectors(ctx context.Context) ([]*SAMLConnector, error) {
	items, err := s.b.List(ctx, prefixSAML, 0)
	if err != nil {
		return nil, err
	}
	out := make([]*SAMLConnector, 0, len(items))
	for _, it := range items {
		var conn SAMLConnector
		if err := json.Unmarshal(it.Value, &conn); err != nil {
			return nil, err
		}
		out = append(out, &conn)
	}
	return out, nil
}

// DeleteSAMLConnector removes a SAML connector and its signing key.
func (s *Server) DeleteSAMLConnector(ctx context.Context, c Caller, name string) error {
	if err := s.authorize(c, "DeleteSAMLConnector"); err != nil {
		return err
	}
	if err := s.b.Delete(ctx, prefixSAML+name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("saml connector %q: %w", name, storage.ErrNotFound)
		}
		return err
	}
	if err := s.b.Delete(ctx, prefixSAMLKey+name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	s.samlMeta.forget(name)
	s.emit(ctx, audit.Event{Event: audit.ConnectorDelete, User: c.Name(), Success: true,
		Fields: map[string]any{"connector": name, "kind": wire.KindSAML}})
	return nil
}

// samlKey is a connector's SP signing key, stored apart from it.
type samlKey struct {
	KeyPEM  string `json:"key_pem"`
	CertPEM string `json:"cert_pem"`
}

func (s *Server) ensureSAMLKey(ctx context.Context, name string) error {
	if _, err := s.b.Get(ctx, prefixSAMLKey+name); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, samlKeyBits)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return err
	}
	now := s.now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
		Subject:   pkix.Name{CommonName: "warden saml sp " + name, Organization: []string{s.cfg.ClusterName}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(samlCertLifetime), KeyUsage: x509.KeyUsageDigitalSignature},
		&x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "warden saml sp " + name, Organization: []string{s.cfg.ClusterName}}},
		&key.PublicKey, key)
	if err != nil {
		return err
	}
	k := samlKey{KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	if err := s.createJSON(ctx, prefixSAMLKey+name, k, time.Time{}); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return err
	}
	return nil
}

// samlURLs are a connector's entity ID and ACS URL: as the spec says, or
// under the proxy's public address.
func (s *Server) samlURLs(conn *SAMLConnector) (entityID string, acs url.URL, metadata url.URL) {
	base := url.URL{Scheme: "https", Host: s.cfg.PublicAddr, Path: samlPathPrefix + conn.Metadata.Name}
	metadata = base
	metadata.Path += "/metadata"
	acs = base
	acs.Path += "/acs"
	if conn.Spec.ACSURL != "" {
		if u, err := url.Parse(conn.Spec.ACSURL); err == nil {
			acs = *u
		}
	}
	entityID = conn.Spec.EntityID
	if entityID == "" {
		entityID = metadata.String()
	}
	return entityID, acs, metadata
}

// samlIdPs caches each connector's IdP metadata.
type samlIdPs struct {
	mu sync.Mutex
	m  map[string]*samlIdP
}

type samlIdP struct {
	source  string // the URL, or the hash of the inline XML
	ed      *saml.EntityDescriptor
	fetched time.Time
}

func (c *samlIdPs) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, name)
}

func (s *Server) idpMetadata(ctx context.Context, conn *SAMLConnector, refetch bool) (*saml.EntityDescriptor, error) {
	source := conn.Spec.IdPMetadataURL
	if source == "" {
		sum := sha256.Sum256([]byte(conn.Spec.IdPMetadataXML))
		source = "xml:" + hex.EncodeToString(sum[:])
	}
	c := &s.samlMeta
	c.mu.Lock()
	e, ok := c.m[conn.Metadata.Name]
	c.mu.Unlock()
	now := s.now()
	if ok && e.source == source && (conn.Spec.IdPMetadataURL == "" ||
		now.Sub(e.fetched) < samlMetadataTTL && !(refetch && now.Sub(e.fetched) > samlRefetchAfter)) {
		return e.ed, nil
	}
	data := []byte(conn.Spec.IdPMetadataXML)
	if conn.Spec.IdPMetadataURL != "" {
		var err error
		if data, err = fetchIdPMetadata(ctx, conn.Spec.IdPMetadataURL); err != nil {
			if ok && e.source == source {
				// The metadata we have still serves (its certificates are
				// what signatures are checked against); try again in a
				// minute rather than at every login.
				s.log.Warn("saml: refetching IdP metadata failed; using the copy fetched before",
					"connector", conn.Metadata.Name, "fetched", e.fetched, "err", err)
				c.mu.Lock()
				c.m[conn.Metadata.Name] = &samlIdP{source: source, ed: e.ed, fetched: now.Add(time.Minute - samlMetadataTTL)}
				c.mu.Unlock()
				return e.ed, nil
			}
			return nil, fmt.Errorf("%w: the identity provider of connector %q is unreachable: %v", wire.ErrUpstream, conn.Metadata.Name, err)
		}
	}
	ed, err := ParseIdPMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("%w: the identity provider metadata of connector %q: %v", wire.ErrUpstream, conn.Metadata.Name, err)
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*samlIdP{}
	}
	c.m[conn.Metadata.Name] = &samlIdP{source: source, ed: ed, fetched: now}
	c.mu.Unlock()
	return ed, nil
}

func fetchIdPMetadata(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := idpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxSAMLMetadata+1))
	if err != nil {
		return nil, err
	}
	if len(data) > wire.MaxSAMLMetadata {
		return nil, fmt.Errorf("GET %s: metadata larger than %d bytes", u, wire.MaxSAMLMetadata)
	}
	return data, nil
}

// serviceProvider is crewjam/saml's SP for a connector, with auth's clock
// and a replay cache in the state store.
func (s *Server) serviceProvider(ctx context.Context, conn *SAMLConnector, refetch bool) (*saml.ServiceProvider, error) {
	ed, err := s.idpMetadata(ctx, conn, refetch)
	if err != nil {
		return nil, err
	}
	entityID, acs, meta := s.samlURLs(conn)
	sp := &saml.ServiceProvider{EntityID: entityID, AcsURL: acs, MetadataURL: meta, IDPMetadata: ed,
		AuthnNameIDFormat: saml.UnspecifiedNameIDFormat, AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		// Keycloak refuses a request without a NameIDPolicy Format.
		SendUnspecifiedNameIDFormat: true,
		Clock:                       dsig.NewFakeClockAt(s.now()), RejectSHA1Signatures: true,
		ReplayCache: samlReplay{s: s, ctx: ctx, connector: conn.Metadata.Name},
		HTTPClient:  idpClient, MetadataValidDuration: 7 * 24 * time.Hour}
	if conn.Spec.SignRequests {
		if sp.Key, sp.Certificate, err = s.samlSigner(ctx, conn.Metadata.Name); err != nil {
			return nil, err
		}
		sp.SignatureMethod = dsig.RSASHA256SignatureMethod
	}
	return sp, nil
}

// samlSigner is a connector's SP signing key and certificate.
func (s *Server) samlSigner(ctx context.Context, name string) (*rsa.PrivateKey, *x509.Certificate, error) {
	var k samlKey
	if err := s.getJSON(ctx, prefixSAMLKey+name, &k); err != nil {
		return nil, nil, fmt.Errorf("connector %q: the SP signing key: %w", name, err)
	}
	kb, _ := pem.Decode([]byte(k.KeyPEM))
	cb, _ := pem.Decode([]byte(k.CertPEM))
	if kb == nil || cb == nil {
		return nil, nil, fmt.Errorf("connector %q: the stored SP signing key is damaged", name)
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// samlReplay remembers accepted assertion IDs in the state store until
// they expire: a replayed assertion is refused, also after a restart.
type samlReplay struct {
	s         *Server
	ctx       context.Context
	connector string
}

// Consume implements saml.AssertionReplayCache.
func (r samlReplay) Consume(id string, expires time.Time) error {
	if min := r.s.now().Add(ssoPendingTTL); expires.Before(min) {
		expires = min
	}
	key := prefixSAMLSeen + r.connector + "/" + identity.HashToken(id)
	err := r.s.createJSON(r.ctx, key, true, expires.Add(samlSkew))
	if errors.Is(err, storage.ErrAlreadyExists) {
		return saml.ErrAssertionReplayed
	}
	return err
}

// SAMLMetadata is the SP metadata of a connector, for its admin to give
// to the IdP (served without a caller: IdPs fetch it).
func (s *Server) SAMLMetadata(ctx context.Context, name string) ([]byte, error) {
	conn, err := s.samlConnector(ctx, name)
	if err != nil {
		return nil, err
	}
	entityID, acs, meta := s.samlURLs(conn)
	sp := &saml.ServiceProvider{EntityID: entityID, AcsURL: acs, MetadataURL: meta,
		AuthnNameIDFormat: saml.UnspecifiedNameIDFormat, AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		Clock: dsig.NewFakeClockAt(s.now()), MetadataValidDuration: 7 * 24 * time.Hour}
	if conn.Spec.SignRequests {
		if sp.Key, sp.Certificate, err = s.samlSigner(ctx, conn.Metadata.Name); err != nil {
			return nil, err
		}
		sp.SignatureMethod = dsig.RSASHA256SignatureMethod
	}
	ed := sp.Metadata()
	for i := range ed.SPSSODescriptors {
		d := &ed.SPSSODescriptors[i]
		// Signing only: Warden asks for no encrypted assertions.
		keep := d.KeyDescriptors[:0]
		for _, k := range d.KeyDescriptors {
			switch k.Use {
			case "signing":
				keep = append(keep, k)
			case "":
				k.Use = "signing"
				k.EncryptionMethods = nil
				keep = append(keep, k)
			}
		}
		d.KeyDescriptors = keep
		t := true
		d.WantAssertionsSigned = &t
	}
	return marshalXML(ed)
}

// BeginSSO starts a login through the connector NAME, of either kind.
func (s *Server) BeginSSO(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
	if _, err := s.b.Get(ctx, prefixSAML+req.Connector); err == nil {
		return s.BeginSAML(ctx, req)
	}
	return s.BeginOIDC(ctx, req)
}

// BeginSAML starts an SP-initiated SAML login: an AuthnRequest (signed
// when the connector says so) sent with the HTTP-Redirect binding, and a
// RelayState, single-use, that keys the pending login with the request's
// ID, which the assertion must answer (InResponseTo).
func (s *Server) BeginSAML(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
	if err := checkSSOBegin(req); err != nil {
		return nil, err
	}
	conn, err := s.samlConnector(ctx, req.Connector)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("no SSO connector %q: %w", req.Connector, storage.ErrNotFound)
		}
		return nil, err
	}
	sp, err := s.serviceProvider(ctx, conn, false)
	if err != nil {
		return nil, err
	}
	ssoURL := sp.GetSSOBindingLocation(saml.HTTPRedirectBinding)
	if ssoURL == "" {
		return nil, fmt.Errorf("%w: the identity provider of connector %q offers no HTTP-Redirect sign-on service", wire.ErrUpstream, conn.Metadata.Name)
	}
	authn, err := sp.MakeAuthenticationRequest(ssoURL, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		return nil, err
	}
	var toks [3]string
	for i := range toks {
		if toks[i], err = identity.NewToken(); err != nil {
			return nil, err
		}
	}
	relay, id, result := toks[0], toks[1], toks[2]
	p := ssoPending{ID: id, Connector: conn.Metadata.Name, RequestID: authn.ID, PublicKey: req.PublicKey,
		ClientRedirect: req.ClientRedirect, TTL: req.TTL, ResultHash: identity.HashToken(result), RemoteAddr: req.RemoteAddr}
	if err := s.createJSON(ctx, prefixSAMLPending+identity.HashToken(relay), p, s.now().Add(ssoPendingTTL)); err != nil {
		return nil, err
	}
	u, err := authn.Redirect(relay, sp)
	if err != nil {
		return nil, err
	}
	return &wire.SSOBeginResponse{AuthURL: u.String(), ID: id, ResultToken: result}, nil
}

// SAMLACS is the assertion consumer service: the IdP's response, posted by
// the browser to the proxy. It spends the RelayState, checks the response
// (crewjam/saml: signatures against the IdP's metadata, issuer, audience,
// recipient and destination, InResponseTo, times, replay; and Warden's
// own checks on top: the assertion itself signed, no comments, one
// assertion, a small clock skew), maps the attributes to roles and issues
// the certificates. It returns where to send the browser next (with the
// login id and a one-time code, as OIDCCallback).
func (s *Server) SAMLACS(ctx context.Context, connector, samlResponse, relayState, remote string) (string, error) {
	if relayState == "" || len(relayState) > 128 {
		return "", badRequest("missing RelayState")
	}
	key := prefixSAMLPending + identity.HashToken(relayState)
	var p ssoPending
	if err := s.getJSON(ctx, key, &p); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("%w: unknown or already used SAML RelayState; start the login again", ErrUnauthenticated)
		}
		return "", err
	}
	if err := s.b.Delete(ctx, key); err != nil {
		return "", fmt.Errorf("%w: unknown or already used SAML RelayState; start the login again", ErrUnauthenticated)
	}
	var (
		resp   *wire.LoginResponse
		reason string
		err    error
	)
	if p.Connector != connector {
		reason, err = "wrong connector", fmt.Errorf("%w: this response was posted to connector %q, the login began with %q", ErrUnauthenticated, connector, p.Connector)
	} else {
		resp, reason, err = s.finishSAML(ctx, &p, samlResponse)
	}
	res := handoffResult{ResultHash: p.ResultHash, Login: resp, Method: "saml", Connector: p.Connector}
	if err != nil {
		res.Error = err.Error()
		s.emit(ctx, audit.Event{Event: audit.UserLogin, Code: audit.CodeLoginFailure, RemoteAddr: p.RemoteAddr, Success: false,
			Error: reason, Fields: map[string]any{"method": "saml", "connector": p.Connector}})
	}
	// As OIDCCallback: the login id and a one-time code for the browser.
	return s.putHandoffResult(ctx, prefixSSOResult, p.ID, p.ClientRedirect, res)
}

func (s *Server) finishSAML(ctx context.Context, p *ssoPending, samlResponse string) (*wire.LoginResponse, string, error) {
	raw, err := DecodeSAMLResponse(samlResponse)
	if err != nil {
		return nil, "malformed response", fmt.Errorf("%w: SAMLResponse: %v", ErrUnauthenticated, err)
	}
	conn, err := s.samlConnector(ctx, p.Connector)
	if err != nil {
		return nil, "connector not found", fmt.Errorf("%w: SSO connector %q no longer exists", ErrUnauthenticated, p.Connector)
	}
	if err := CheckSAMLResponseShape(raw); err != nil {
		return nil, "malformed response", fmt.Errorf("%w: SAML response refused: %v", ErrUnauthenticated, err)
	}
	sp, err := s.serviceProvider(ctx, conn, false)
	if err != nil {
		return nil, "IdP unreachable", err
	}
	a, err := sp.ParseXMLResponse(raw, []string{p.RequestID}, sp.AcsURL)
	if err != nil && errors.Is(err, saml.ErrInvalidSignature) && conn.Spec.IdPMetadataURL != "" {
		// The IdP may have rotated its key: fetch its metadata again
		// (at most every samlRefetchAfter) and check once more.
		if sp2, err2 := s.serviceProvider(ctx, conn, true); err2 == nil {
			a, err = sp2.ParseXMLResponse(raw, []string{p.RequestID}, sp2.AcsURL)
		}
	}
	if err != nil {
		why := err
		var ire *saml.InvalidResponseError
		if errors.As(err, &ire) && ire.PrivateErr != nil {
			why = ire.PrivateErr
		}
		return nil, "invalid response: " + truncate(why.Error(), 200), fmt.Errorf("%w: invalid SAML response: %v", ErrUnauthenticated, truncate(why.Error(), 300))
	}
	if err := s.checkSAMLAssertion(a, sp, p.RequestID); err != nil {
		return nil, "invalid assertion: " + err.Error(), fmt.Errorf("%w: invalid SAML assertion: %v", ErrUnauthenticated, err)
	}
	attrs := SAMLAttributes(a)
	var name string
	if an := conn.Spec.UsernameAttribute; an != "" {
		vs := claimValues(attrs, an)
		if len(vs) != 1 {
			return nil, "no user name attribute", denied("the assertion has no single %q attribute for the user name (connector %q: username_attribute)", an, conn.Metadata.Name)
		}
		name = vs[0]
	} else if a.Subject != nil && a.Subject.NameID != nil {
		name = a.Subject.NameID.Value
	}
	if name, err = wire.UsernameFrom(name, conn.Spec.UsernameDomain); err != nil {
		return nil, "user name not valid", denied("the SAML user name: %v", err)
	}
	if err := identity.ValidateUsername(name); err != nil {
		return nil, "user name not valid", denied("the SAML user name is not a valid Warden user name: %v (connector %q: set username_attribute)", err, conn.Metadata.Name)
	}
	roles, traits := MapAttributes(conn.Spec, attrs)
	subject := ""
	if a.Subject != nil && a.Subject.NameID != nil {
		subject = a.Subject.NameID.Value
	}
	return s.ssoUser(ctx, ssoIdentity{connector: conn.Metadata.Name, method: "saml", what: "attributes",
		name: name, subject: subject, roles: roles, traits: traits}, p)
}

// checkSAMLAssertion is Warden's own check of an assertion crewjam/saml
// accepted: the assertion itself must be signed (not only the Response
// around it), its times hold with a skew of samlSkew (crewjam allows
// three minutes), and audience, recipient and InResponseTo are checked
// again.
func (s *Server) checkSAMLAssertion(a *saml.Assertion, sp *saml.ServiceProvider, requestID string) error {
	if a.Signature == nil {
		return errors.New("the assertion is not signed (the identity provider must sign assertions)")
	}
	now := s.now()
	c := a.Conditions
	if c == nil {
		return errors.New("no Conditions")
	}
	if !c.NotBefore.IsZero() && now.Add(samlSkew).Before(c.NotBefore) {
		return fmt.Errorf("not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if c.NotOnOrAfter.IsZero() || !now.Add(-samlSkew).Before(c.NotOnOrAfter) {
		return fmt.Errorf("expired at %s", c.NotOnOrAfter.UTC().Format(time.RFC3339))
	}
	if a.IssueInstant.After(now.Add(samlSkew)) || a.IssueInstant.Before(now.Add(-ssoPendingTTL-samlSkew)) {
		return fmt.Errorf("issued at %s, not now", a.IssueInstant.UTC().Format(time.RFC3339))
	}
	aud := false
	for _, r := range c.AudienceRestrictions {
		for _, x := range r.AllAudiences() {
			aud = aud || x.Value == sp.EntityID
		}
	}
	if !aud {
		return fmt.Errorf("the audience is not %s", sp.EntityID)
	}
	ok := false
	if a.Subject != nil {
		for _, sc := range a.Subject.SubjectConfirmations {
			d := sc.SubjectConfirmationData
			if sc.Method != "urn:oasis:names:tc:SAML:2.0:cm:bearer" || d == nil {
				continue
			}
			ok = ok || (d.Recipient == sp.AcsURL.String() && d.InResponseTo == requestID &&
				!d.NotOnOrAfter.IsZero() && now.Add(-samlSkew).Before(d.NotOnOrAfter))
		}
	}
	if !ok {
		return errors.New("no bearer confirmation for this login (recipient, InResponseTo or NotOnOrAfter)")
	}
	return nil
}

// SAMLAttributes are an assertion's attributes by Name and by
// FriendlyName, as claims: lists of strings.
func SAMLAttributes(a *saml.Assertion) map[string]any {
	out := map[string]any{}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			for _, k := range []string{at.Name, at.FriendlyName} {
				if k == "" {
					continue
				}
				vs, _ := out[k].([]any)
				for _, v := range at.Values {
					vs = append(vs, v.Value)
				}
				out[k] = vs
			}
		}
	}
	return out
}

// MapAttributes returns the roles and traits a SAML connector gives these
// attributes (the same matching as an OIDC connector's claims).
func MapAttributes(spec wire.SAMLConnectorSpec, attrs map[string]any) ([]string, map[string][]string) {
	m := make([]wire.ClaimMapping, len(spec.AttributesToRoles))
	for i, a := range spec.AttributesToRoles {
		m[i] = wire.ClaimMapping{Claim: a.Attribute, Value: a.Value, Roles: a.Roles}
	}
	return MapClaims(wire.OIDCConnectorSpec{ClaimsToRoles: m, Traits: spec.Traits}, attrs)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
