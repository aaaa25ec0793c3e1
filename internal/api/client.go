package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/lock"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
	"github.com/warden-sh/warden/internal/wire"
)

// Fingerprint returns "sha256:<hex>" of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Addr is the proxy address host:port.
	Addr string
	// RootCAs are the trusted TLS CAs (the cluster's). Nil with Insecure
	// false means the system pool, which will not trust a cluster CA.
	RootCAs *x509.CertPool
	// Certificate is the client identity (nil for open endpoints).
	Certificate *tls.Certificate
	// GetCertificate, if set, is asked for the identity on every new
	// connection (identities that renew themselves).
	GetCertificate func() (*tls.Certificate, error)
	// Insecure skips server verification (tests and first contact only).
	Insecure bool
	Timeout  time.Duration
}

// Client calls the API.
type Client struct {
	base   string
	hc     *http.Client
	stream *http.Client
	// watch carries the watch stream over HTTP/1.1, on a TLS connection of
	// its own: a pushed change then reaches the reader with one read, without
	// HTTP/2's frame scheduling, flow control and goroutine hand-offs on
	// both ends (which dominated a lock's fan-out to many nodes).
	watch *http.Client
}

// NewClient returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("proxy address is required (--proxy host:port)")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tc := &tls.Config{RootCAs: cfg.RootCAs, InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12}
	switch {
	case cfg.GetCertificate != nil:
		get := cfg.GetCertificate
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return get() }
	case cfg.Certificate != nil:
		cert := cfg.Certificate
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}
	wtc := tc.Clone()
	wtc.NextProtos = []string{"http/1.1"}
	wtr := &http.Transport{TLSClientConfig: wtc, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 1, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}
	return &Client{
		base:   "https://" + cfg.Addr,
		hc:     &http.Client{Transport: tr, Timeout: cfg.Timeout},
		stream: &http.Client{Transport: tr},
		watch:  &http.Client{Transport: wtr},
	}, nil
}

// Close releases idle connections.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
	c.watch.CloseIdleConnections()
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	forwardFrom(req)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Warden proxy at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	return readResponse(resp, out)
}

func readResponse(resp *http.Response, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("unexpected response %s", resp.Status)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*rawBody); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// Ping fetches cluster information. The fingerprint it returns is that of
// the one CA certificate it returns (checked here): a proxy cannot claim a
// pinned fingerprint while handing out another CA to trust.
func (c *Client) Ping(ctx context.Context) (*PingResponse, error) {
	var out PingResponse
	if err := c.do(ctx, http.MethodGet, "/v1/ping", nil, &out); err != nil {
		return nil, err
	}
	if err := out.checkCA(); err != nil {
		return nil, fmt.Errorf("the proxy at %s: %w", c.Addr(), err)
	}
	return &out, nil
}

// checkCA checks that TLSCA is exactly one certificate whose fingerprint is
// TLSCAFingerprint.
func (p *PingResponse) checkCA() error {
	block, rest := pem.Decode([]byte(p.TLSCA))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("its cluster CA is not one PEM certificate: refusing to trust it")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("its cluster CA certificate is invalid (%v): refusing to trust it", err)
	}
	if fp := Fingerprint(block.Bytes); !strings.EqualFold(fp, p.TLSCAFingerprint) {
		return fmt.Errorf("its cluster CA certificate has fingerprint %s, not %q as it claims: refusing to trust it", fp, p.TLSCAFingerprint)
	}
	p.TLSCAFingerprint = Fingerprint(block.Bytes)
	return nil
}

// Login authenticates with password and TOTP.
func (c *Client) Login(ctx context.Context, req wire.LoginRequest) (*wire.LoginResponse, error) {
	var out wire.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/login", req, &out)
}

// BeginSignup starts a signup with an invite token.
func (c *Client) BeginSignup(ctx context.Context, token string) (*wire.SignupChallenge, error) {
	var out wire.SignupChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/signup/begin", wire.SignupRequest{Token: token}, &out)
}

// CompleteSignup sets the password and confirms TOTP. With req.PublicKey it
// also logs in and returns certificates for that key (else nil).
func (c *Client) CompleteSignup(ctx context.Context, req wire.SignupRequest) (*wire.LoginResponse, error) {
	var out *wire.LoginResponse
	if err := c.do(ctx, http.MethodPost, "/v1/signup/complete", req, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// JoinNode joins a node with a token.
func (c *Client) JoinNode(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	var out wire.JoinResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/nodes/join", req, &out)
}

// WhoAmI returns the caller's identity as the server sees it.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	return &out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, &out)
}

// RenewNodeCerts renews a node's certificates for a (new) public key.
func (c *Client) RenewNodeCerts(ctx context.Context, publicKey string) (*wire.Certs, error) {
	var out wire.Certs
	return &out, c.do(ctx, http.MethodPost, "/v1/nodes/renew", renewRequest{PublicKey: publicKey}, &out)
}

// ListNodes lists nodes the caller may access.
func (c *Client) ListNodes(ctx context.Context, labels map[string]string) ([]wire.Node, error) {
	var out []wire.Node
	return out, c.do(ctx, http.MethodGet, nodesPath(labels), nil, &out)
}

// ListNodesJSON is ListNodes with each node left as the JSON auth sent
// (checked to be well-formed, not decoded): for printing them as JSON.
func (c *Client) ListNodesJSON(ctx context.Context, labels map[string]string) ([]json.RawMessage, error) {
	var body rawBody
	if err := c.do(ctx, http.MethodGet, nodesPath(labels), nil, &body); err != nil {
		return nil, err
	}
	return splitJSONArray(body)
}

// rawBody, as do's out, is given the response body as it is.
type rawBody []byte

// splitJSONArray returns the elements of the JSON array data, as
// json.Unmarshal into a []json.RawMessage does, with one validating pass
// over the document (encoding/json makes two: validation, then decoding)
// and a split at the array's top-level commas. The elements share data.
func splitJSONArray(data []byte) ([]json.RawMessage, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON in the response")
	}
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil, nil
	}
	if data[0] != '[' {
		return nil, errors.New("the response is not a JSON array")
	}
	out := make([]json.RawMessage, 0, bytes.Count(data, []byte("},"))+1)
	depth, inString, escaped, start := 0, false, false, 1
	for i := 1; i < len(data)-1; i++ {
		b := data[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '[' || b == '{':
			depth++
		case b == ']' || b == '}':
			depth--
		case b == ',' && depth == 0:
			out = append(out, json.RawMessage(bytes.TrimSpace(data[start:i])))
			start = i + 1
		}
	}
	if last := bytes.TrimSpace(data[start : len(data)-1]); len(last) > 0 || len(out) > 0 {
		out = append(out, json.RawMessage(last))
	}
	return out, nil
}

func nodesPath(labels map[string]string) string {
	q := url.Values{}
	for k, v := range labels {
		q.Add("label", k+"="+v)
	}
	return "/v1/nodes?" + q.Encode()
}

// EmitEvents sends node audit events.
func (c *Client) EmitEvents(ctx context.Context, evs []audit.Event) error {
	return c.do(ctx, http.MethodPost, "/v1/events", evs, nil)
}

// SearchAudit queries the audit log.
func (c *Client) SearchAudit(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("type", q.Type)
	set("user", q.User)
	set("node", q.Node)
	set("session", q.SessionID)
	set("text", q.Text)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.AfterSeq > 0 {
		v.Set("after", strconv.FormatInt(q.AfterSeq, 10))
	}
	var out []audit.Event
	return out, c.do(ctx, http.MethodGet, "/v1/audit?"+v.Encode(), nil, &out)
}

// Watch streams role and lock events to fn until ctx ends or the stream
// breaks.
func (c *Client) Watch(ctx context.Context, fn func(WatchEvent)) error {
	body, err := c.openStreamWith(ctx, c.watch, "/v1/watch")
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 32<<20)
	for sc.Scan() {
		var ev WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		fn(ev)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// CreateUser adds a user and returns the invite.
func (c *Client) CreateUser(ctx context.Context, req wire.CreateUserRequest) (*wire.InviteResult, error) {
	var out wire.InviteResult
	return &out, c.do(ctx, http.MethodPost, "/v1/users", req, &out)
}

// ListUsers lists users.
func (c *Client) ListUsers(ctx context.Context) ([]wire.UserInfo, error) {
	var out []wire.UserInfo
	return out, c.do(ctx, http.MethodGet, "/v1/users", nil, &out)
}

// DeleteUser removes a user.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(name), nil, nil)
}

// UpdateUser sets a user's roles.
func (c *Client) UpdateUser(ctx context.Context, name string, req wire.UpdateUserRequest) (*wire.UserInfo, error) {
	var out wire.UserInfo
	return &out, c.do(ctx, http.MethodPatch, "/v1/users/"+url.PathEscape(name), req, &out)
}

// ResetUser issues a new invite for a user.
func (c *Client) ResetUser(ctx context.Context, name string) (*wire.InviteResult, error) {
	var out wire.InviteResult
	return &out, c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/reset", nil, &out)
}

// UpsertRole creates or replaces a role.
func (c *Client) UpsertRole(ctx context.Context, r *policy.Role) error {
	return c.do(ctx, http.MethodPut, "/v1/roles/"+url.PathEscape(r.Metadata.Name), r, nil)
}

// ListRoles lists roles.
func (c *Client) ListRoles(ctx context.Context) ([]*policy.Role, error) {
	var out []*policy.Role
	return out, c.do(ctx, http.MethodGet, "/v1/roles", nil, &out)
}

// GetRole fetches a role.
func (c *Client) GetRole(ctx context.Context, name string) (*policy.Role, error) {
	var out policy.Role
	return &out, c.do(ctx, http.MethodGet, "/v1/roles/"+url.PathEscape(name), nil, &out)
}

// DeleteRole removes a role.
func (c *Client) DeleteRole(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/roles/"+url.PathEscape(name), nil, nil)
}

// CreateToken creates a join token.
func (c *Client) CreateToken(ctx context.Context, req wire.CreateTokenRequest) (*wire.TokenResult, error) {
	var out wire.TokenResult
	return &out, c.do(ctx, http.MethodPost, "/v1/tokens", req, &out)
}

// ListTokens lists join tokens.
func (c *Client) ListTokens(ctx context.Context) ([]wire.Token, error) {
	var out []wire.Token
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// DeleteToken revokes a join token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// Addr returns the proxy address this client talks to.
func (c *Client) Addr() string { return strings.TrimPrefix(c.base, "https://") }

// CreateLock locks a target.
func (c *Client) CreateLock(ctx context.Context, req wire.CreateLockRequest) (*wire.CreateLockResult, error) {
	var out wire.CreateLockResult
	return &out, c.do(ctx, http.MethodPost, "/v1/locks", req, &out)
}

// ListLocks lists locks in force.
func (c *Client) ListLocks(ctx context.Context) ([]*lock.Lock, error) {
	var out []*lock.Lock
	return out, c.do(ctx, http.MethodGet, "/v1/locks", nil, &out)
}

// DeleteLock removes a lock.
func (c *Client) DeleteLock(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/locks/"+url.PathEscape(id), nil, nil)
}

// ListSessions lists live sessions.
func (c *Client) ListSessions(ctx context.Context) ([]wire.LiveSession, error) {
	var out []wire.LiveSession
	return out, c.do(ctx, http.MethodGet, "/v1/sessions", nil, &out)
}

// CreateAccessRequest files an access request.
func (c *Client) CreateAccessRequest(ctx context.Context, in wire.CreateAccessRequest) (*access.Request, error) {
	var out access.Request
	return &out, c.do(ctx, http.MethodPost, "/v1/access_requests", in, &out)
}

// ListAccessRequests lists visible access requests.
func (c *Client) ListAccessRequests(ctx context.Context) ([]*access.Request, error) {
	var out []*access.Request
	return out, c.do(ctx, http.MethodGet, "/v1/access_requests", nil, &out)
}

// GetAccessRequest fetches one access request.
func (c *Client) GetAccessRequest(ctx context.Context, id string) (*access.Request, error) {
	var out access.Request
	return &out, c.do(ctx, http.MethodGet, "/v1/access_requests/"+url.PathEscape(id), nil, &out)
}

// ReviewAccessRequest approves or denies.
func (c *Client) ReviewAccessRequest(ctx context.Context, id string, approve bool, reason string) (*access.Request, error) {
	var out access.Request
	return &out, c.do(ctx, http.MethodPost, "/v1/access_requests/"+url.PathEscape(id)+"/review", ReviewBody{Approve: approve, Reason: reason}, &out)
}

// RevokeAccessRequest revokes.
func (c *Client) RevokeAccessRequest(ctx context.Context, id, reason string) (*access.Request, error) {
	var out access.Request
	return &out, c.do(ctx, http.MethodPost, "/v1/access_requests/"+url.PathEscape(id)+"/revoke", ReviewBody{Reason: reason}, &out)
}

// UseAccessRequest returns certificates carrying the request.
func (c *Client) UseAccessRequest(ctx context.Context, id, publicKey string) (*wire.LoginResponse, error) {
	var out wire.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/access_requests/"+url.PathEscape(id)+"/use", renewRequest{PublicKey: publicKey}, &out)
}

// SuggestRoles lists roles the caller could request for login on node.
func (c *Client) SuggestRoles(ctx context.Context, login, node string) ([]string, error) {
	var out Suggestion
	err := c.do(ctx, http.MethodGet, "/v1/access_requests/suggest?"+url.Values{"login": {login}, "node": {node}}.Encode(), nil, &out)
	return out.Roles, err
}

// AppendRecording uploads a recording chunk (node). On an offset conflict it
// returns *recording.OffsetError with the stored length.
func (c *Client) AppendRecording(ctx context.Context, meta recording.Meta, offset int64, data []byte) (int64, error) {
	return c.appendRecordingAt(ctx, "/v1/recordings/", meta, offset, data)
}

// appendRecordingAt is AppendRecording at path (then the session id).
func (c *Client) appendRecordingAt(ctx context.Context, path string, meta recording.Meta, offset int64, data []byte) (int64, error) {
	mj, err := json.Marshal(meta)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut,
		c.base+path+url.PathEscape(meta.SessionID)+"?offset="+strconv.FormatInt(offset, 10), bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	forwardFrom(req)
	req.Header.Set(RecordingMetaHeader, base64.StdEncoding.EncodeToString(mj))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out LengthBody
	if err := readResponse(resp, &out); err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && (ae.Code == CodeOffset || ae.Code == "") {
			return 0, &recording.OffsetError{Have: ae.Length}
		}
		return 0, err
	}
	return out.Length, nil
}

// CompleteRecording closes a recording (node).
func (c *Client) CompleteRecording(ctx context.Context, id string, length int64, sha string, interrupted bool) error {
	return c.do(ctx, http.MethodPost, "/v1/recordings/"+url.PathEscape(id)+"/complete",
		CompleteBody{Length: length, SHA256: sha, Interrupted: interrupted}, nil)
}

// ListRecordings lists recordings.
func (c *Client) ListRecordings(ctx context.Context, user, node string, since time.Time) ([]recording.Info, error) {
	v := url.Values{}
	if user != "" {
		v.Set("user", user)
	}
	if node != "" {
		v.Set("node", node)
	}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	var out []recording.Info
	return out, c.do(ctx, http.MethodGet, "/v1/recordings?"+v.Encode(), nil, &out)
}

// SearchRecordings searches recordings' output and typed input.
func (c *Client) SearchRecordings(ctx context.Context, text string, limit int) ([]wire.RecordingMatch, error) {
	var out []wire.RecordingMatch
	return out, c.do(ctx, http.MethodGet, "/v1/recordings/search?"+url.Values{"text": {text}, "limit": {strconv.Itoa(limit)}}.Encode(), nil, &out)
}

// RecordingBody is a recording's bytes as auth streams them. Auth checks
// them on their way against the hash recorded when the recording completed
// and sends the outcome after them: reading to the end returns io.EOF only
// when the check passed (or the recording is still being recorded:
// Complete is false, nothing is checked yet); otherwise the error names
// the session and says what is wrong.
type RecordingBody struct {
	resp     *http.Response
	id       string
	Complete bool
	err      error
}

func (b *RecordingBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.resp.Body.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		// The trailer is set once the body has been read to its end.
		switch v := b.resp.Trailer.Get(RecordingCheckTrailer); {
		case v == RecordingCheckOK, v == RecordingCheckLive:
			b.err = io.EOF
		case strings.HasPrefix(v, "altered: "):
			b.err = &recording.AlteredError{SessionID: b.id, Reason: strings.TrimPrefix(v, "altered: ")}
		default:
			b.err = fmt.Errorf("the recording of session %s arrived without the outcome of its check: the stream was cut short", b.id)
		}
		return n, b.err
	case err != nil:
		b.err = fmt.Errorf("recording of session %s: %w", b.id, err)
		return n, b.err
	}
	return n, nil
}

// Close ends the stream.
func (b *RecordingBody) Close() error { return b.resp.Body.Close() }

// OpenRecording streams a recording's asciicast bytes, checked (see
// RecordingBody).
func (c *Client) OpenRecording(ctx context.Context, id string) (*RecordingBody, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/recordings/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	forwardFrom(req)
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readResponse(resp, nil)
	}
	return &RecordingBody{resp: resp, id: id, Complete: resp.Header.Get("X-Warden-Recording-Complete") == "true"}, nil
}

// VerifyRecordings checks recordings (all when ids is empty) against the
// hashes recorded when they completed.
func (c *Client) VerifyRecordings(ctx context.Context, ids []string) ([]wire.RecordingCheck, error) {
	// Reading every recording takes long: the streaming client, bounded.
	ctx, cancel := context.WithTimeout(ctx, 6*time.Hour)
	defer cancel()
	body, err := c.openStream(ctx, "/v1/recordings/verify?"+url.Values{"session": ids}.Encode())
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var out []wire.RecordingCheck
	return out, json.NewDecoder(io.LimitReader(body, 64<<20)).Decode(&out)
}

// openStream GETs a long or large response without the client timeout; the
// caller closes the body.
func (c *Client) openStream(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.openStreamWith(ctx, c.stream, path)
}

func (c *Client) openStreamWith(ctx context.Context, hc *http.Client, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	forwardFrom(req)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readResponse(resp, nil)
	}
	return resp.Body, nil
}

// VerifyAudit checks the audit log's hash chain.
func (c *Client) VerifyAudit(ctx context.Context) (*audit.VerifyResult, error) {
	// Verifying a large log takes long: the streaming client (no overall
	// timeout), bounded here.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	body, err := c.openStream(ctx, "/v1/audit/verify")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var out audit.VerifyResult
	return &out, json.NewDecoder(io.LimitReader(body, 64<<20)).Decode(&out)
}

// AuditKey returns the public key that verifies the audit log's
// checkpoints.
func (c *Client) AuditKey(ctx context.Context) (*AuditKey, error) {
	var out AuditKey
	return &out, c.do(ctx, http.MethodGet, "/v1/audit/key", nil, &out)
}

// TailAudit streams audit events after afterSeq to fn until ctx ends.
func (c *Client) TailAudit(ctx context.Context, afterSeq int64, fn func(audit.Event) error) error {
	body, err := c.openStream(ctx, "/v1/audit/stream?after="+strconv.FormatInt(afterSeq, 10))
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("audit stream: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// BeginOIDC starts an SSO login through a connector of either kind, OIDC
// or SAML (no client certificate needed).
func (c *Client) BeginOIDC(ctx context.Context, req wire.SSOBeginRequest) (*wire.SSOBeginResponse, error) {
	var out wire.SSOBeginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/sso/oidc/begin", req, &out)
}

// ResultOIDC fetches the outcome of an SSO login, once.
func (c *Client) ResultOIDC(ctx context.Context, req wire.SSOResultRequest) (*wire.LoginResponse, error) {
	var out wire.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/sso/oidc/result", req, &out)
}

// UpsertConnector creates or replaces an OIDC connector.
func (c *Client) UpsertConnector(ctx context.Context, conn *wire.OIDCConnector) error {
	return c.do(ctx, http.MethodPut, "/v1/connectors/oidc/"+url.PathEscape(conn.Metadata.Name), conn, nil)
}

// ListConnectors lists OIDC connectors.
func (c *Client) ListConnectors(ctx context.Context) ([]*wire.OIDCConnector, error) {
	var out []*wire.OIDCConnector
	return out, c.do(ctx, http.MethodGet, "/v1/connectors/oidc", nil, &out)
}

// GetConnector fetches an OIDC connector.
func (c *Client) GetConnector(ctx context.Context, name string) (*wire.OIDCConnector, error) {
	var out wire.OIDCConnector
	return &out, c.do(ctx, http.MethodGet, "/v1/connectors/oidc/"+url.PathEscape(name), nil, &out)
}

// DeleteConnector removes an OIDC connector.
func (c *Client) DeleteConnector(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/connectors/oidc/"+url.PathEscape(name), nil, nil)
}

// UpsertSAMLConnector creates or replaces a SAML connector.
func (c *Client) UpsertSAMLConnector(ctx context.Context, conn *wire.SAMLConnector) error {
	return c.do(ctx, http.MethodPut, "/v1/connectors/saml/"+url.PathEscape(conn.Metadata.Name), conn, nil)
}

// ListSAMLConnectors lists SAML connectors.
func (c *Client) ListSAMLConnectors(ctx context.Context) ([]*wire.SAMLConnector, error) {
	var out []*wire.SAMLConnector
	return out, c.do(ctx, http.MethodGet, "/v1/connectors/saml", nil, &out)
}

// GetSAMLConnector fetches a SAML connector.
func (c *Client) GetSAMLConnector(ctx context.Context, name string) (*wire.SAMLConnector, error) {
	var out wire.SAMLConnector
	return &out, c.do(ctx, http.MethodGet, "/v1/connectors/saml/"+url.PathEscape(name), nil, &out)
}

// DeleteSAMLConnector removes a SAML connector.
func (c *Client) DeleteSAMLConnector(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/connectors/saml/"+url.PathEscape(name), nil, nil)
}

// ListMFADevices lists the caller's MFA devices.
func (c *Client) ListMFADevices(ctx context.Context) (*wire.MFADevices, error) {
	var out wire.MFADevices
	return &out, c.do(ctx, http.MethodGet, "/v1/mfa/devices", nil, &out)
}

// BeginAddMFADevice starts adding an MFA device.
func (c *Client) BeginAddMFADevice(ctx context.Context, req wire.MFAAddRequest) (*wire.MFAAddChallenge, error) {
	var out wire.MFAAddChallenge
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/devices/begin", req, &out)
}

// FinishAddMFADevice completes adding an MFA device.
func (c *Client) FinishAddMFADevice(ctx context.Context, req wire.MFAAddFinish) (*wire.MFADevice, error) {
	var out wire.MFADevice
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/devices/finish", req, &out)
}

// DeleteMFADevice removes an MFA device by name or id.
func (c *Client) DeleteMFADevice(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/mfa/devices/"+url.PathEscape(name), nil, nil)
}

// RegenerateRecoveryCodes replaces the caller's recovery codes.
func (c *Client) RegenerateRecoveryCodes(ctx context.Context, r wire.MFAResponse) (*wire.RecoveryCodes, error) {
	var out wire.RecoveryCodes
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/recovery-codes", r, &out)
}

// BeginPasskeyHandoff starts `warden login --passkey` (no client certificate needed).
func (c *Client) BeginPasskeyHandoff(ctx context.Context, req wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
	var out wire.PasskeyHandoff
	return &out, c.do(ctx, http.MethodPost, "/v1/passkey/begin", req, &out)
}

// ResultPasskey fetches the outcome of a passkey hand-off, once.
func (c *Client) ResultPasskey(ctx context.Context, req wire.PasskeyResultRequest) (*wire.LoginResponse, error) {
	var out wire.LoginResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/passkey/result", req, &out)
}

// BeginMFAHandoff starts a fresh MFA check with a passkey in a browser.
func (c *Client) BeginMFAHandoff(ctx context.Context, req wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
	var out wire.PasskeyHandoff
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/handoff", req, &out)
}

// ResultMFAHandoff fetches its outcome, once: the token of the check.
func (c *Client) ResultMFAHandoff(ctx context.Context, req wire.PasskeyResultRequest) (*wire.MFAResponse, error) {
	var out wire.MFAResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/mfa/handoff/result", req, &out)
}
