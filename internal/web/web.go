// Package web is Warden's web UI: server-rendered pages (html/template)
// with a little progressive enhancement (htmx), served by the proxy under
// /web/ on its one HTTPS port. Scripts and styles are built from ui/ by
// esbuild and embedded (static/), so the binary needs nothing else.
//
// The pages call the same auth.Server methods as the JSON API (through
// the Auth interface: in process, or over the API from a proxy running
// apart from auth), with a Caller checked by CurrentCaller on every
// request: a browser may do nothing the CLI may not. See docs/web.md for the session cookie,
// CSRF and Content-Security-Policy choices.
package web

//go:generate sh -c "cd ui && npm ci --no-audit --no-fund && npm run build"

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/storage"
)

//go:embed static templates
var files embed.FS

// Prefix is the path the UI is served under.
const Prefix = "/web/"

// Config configures the web UI.
type Config struct {
	// Auth is the auth server in this process; Remote, set instead, is
	// auth reached over its API (a proxy running apart from auth).
	Auth   *auth.Server
	Remote Auth
	// ProxyAddr is the address of the proxy's SSH side, which the web
	// terminal connects through (nil: no web terminal).
	ProxyAddr func() string
	// DialProxy, if set, connects to the proxy's SSH side (with data, to
	// its data connections) in process, presenting clientAddr (the
	// browser's address) as the connection's client address, so the
	// proxy's checks and audit, and the node's session, name the browser
	// rather than this server. Without it the web terminal dials
	// ProxyAddr over TCP and reaches nodes through channels.
	DialProxy func(ctx context.Context, clientAddr string, data bool) (net.Conn, error)
	// RedeemData, if set with DialProxy, takes the ticket of a data
	// connection that the proxy gave the connection DialProxy made for
	// clientAddr and returns the node's connection itself, in process
	// (proxy.Server.RedeemLocal): the terminal's bytes then pass no
	// socket pair and no relay in this process.
	RedeemData func(clientAddr, ticket string) (net.Conn, error)
	// JoinKube, if set, joins a live kube session (kubectl exec or
	// attach) of the proxy in this process, deciding as the proxy does
	// for warden join (proxy.Server.JoinKube); remoteAddr is the
	// browser's.
	JoinKube func(ctx context.Context, c auth.Caller, remoteAddr, id, mode string) (KubeParticipant, error)
	Logger   *slog.Logger
	Now      func() time.Time
	// Version is the version of this process (auth and proxy), shown on
	// the cluster health page.
	Version string
	// ResumeGrace is how long a web terminal keeps its SSH session while
	// no page shows it (a network blip): DefaultResumeGrace if zero, at
	// most MaxResumeGrace.
	ResumeGrace time.Duration
}

// Handler serves the web UI.
type Handler struct {
	auth       Auth
	proxyAddr  func() string
	dialProxy  func(ctx context.Context, clientAddr string, data bool) (net.Conn, error)
	redeemData func(clientAddr, ticket string) (net.Conn, error)
	joinKube   func(ctx context.Context, c auth.Caller, remoteAddr, id, mode string) (KubeParticipant, error)
	terms      *terminals
	log        *slog.Logger
	now        func() time.Time
	mux        *http.ServeMux
	sessions   *sessions
	indexes    *indexCache
	signups    *signups
	sso        ssoLogins
	pages      map[string]*template.Template
	// assets maps a static file name to its content hash (cache busting).
	assets map[string]string
	cop    *http.CrossOriginProtection
	// version and started describe this process (cluster health page).
	version string
	started time.Time
}

// New returns the web UI handler.
func New(cfg Config) (*Handler, error) {
	var a Auth
	switch {
	case cfg.Auth != nil && cfg.Remote != nil:
		return nil, errors.New("web: set Auth or Remote, not both")
	case cfg.Auth != nil:
		a = InProcess(cfg.Auth)
	case cfg.Remote != nil:
		a = cfg.Remote
	default:
		return nil, errors.New("web: Auth is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ResumeGrace < 0 || cfg.ResumeGrace > MaxResumeGrace {
		return nil, fmt.Errorf("web: the terminal resume grace must be between 0 (the default, %s) and %s, got %s", DefaultResumeGrace, MaxResumeGrace, cfg.ResumeGrace)
	}
	h := &Handler{auth: a, proxyAddr: cfg.ProxyAddr, dialProxy: cfg.DialProxy, redeemData: cfg.RedeemData, joinKube: cfg.JoinKube, terms: newTerminals(cfg.ResumeGrace), log: cfg.Logger, now: cfg.Now, mux: http.NewServeMux(),
		sessions: newSessions(cfg.Now, a), indexes: newIndexCache(64), signups: newSignups(cfg.Now), assets: map[string]string{},
		cop: http.NewCrossOriginProtection(), version: cfg.Version, started: cfg.Now()}
	if err := h.loadAssets(); err != nil {
		return nil, err
	}
	if err := h.loadTemplates(); err != nil {
		return nil, err
	}
	h.routes()
	return h, nil
}

// csp allows only the UI's own scripts, styles and images: no inline
// script or style, no eval, no framing, forms only to this origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// Invite links carry their token in the path: no page sends its URL on.
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Strict-Transport-Security", "max-age=63072000")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		hd.Set("Cache-Control", "no-store")
	}
	// Cross-origin state changes are refused before anything else
	// (Sec-Fetch-Site / Origin); the forms' CSRF tokens are the second
	// line, for browsers that send neither header.
	if err := h.cop.Check(r); err != nil {
		h.renderError(w, r, nil, http.StatusForbidden, "cross-origin request refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r.URL.Path))
	h.mux.ServeHTTP(w, r)
}

// bodyLimit bounds a request's body: 64 KiB, but the roles editor's text
// (maxRolesText, percent-encoded) on its review and apply.
func bodyLimit(p string) int64 {
	if p == Prefix+"admin/roles/review" || p == Prefix+"admin/roles/apply" {
		return 4*maxRolesText + 64<<10
	}
	return 64 << 10
}

func (h *Handler) loadAssets() error {
	return fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "static/")
		h.assets[name] = hex.EncodeToString(sum[:8])
		return nil
	})
}

// gzipped holds each static file compressed, made at its first request
// and kept for the process (every Handler shares it): compressing them all
// at start cost each process start about 0.2 s of CPU.
var gzipped = func() map[string]func() []byte {
	m := map[string]func() []byte{}
	_ = fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		m[strings.TrimPrefix(p, "static/")] = sync.OnceValue(func() []byte {
			b, err := files.ReadFile(p)
			if err != nil {
				return nil
			}
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
			if _, err := zw.Write(b); err != nil || zw.Close() != nil {
				return nil
			}
			return z.Bytes()
		})
		return nil
	})
	return m
}()

// asset is the URL of a static file, versioned by its content.
func (h *Handler) asset(name string) (string, error) {
	v, ok := h.assets[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return Prefix + "static/" + name + "?v=" + v, nil
}

func (h *Handler) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := files.ReadFile("static/" + name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	if r.URL.Query().Get("v") == h.assets[name] {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	// Scripts and styles go compressed to every browser that accepts
	// gzip (all do): the terminal's bundle is about a quarter of its size.
	w.Header().Add("Vary", "Accept-Encoding")
	etag := h.assets[name]
	if z, ok := gzipped[name]; ok && acceptsGzip(r) {
		if zb := z(); zb != nil {
			w.Header().Set("Content-Encoding", "gzip")
			b, etag = zb, etag+"-gz"
		}
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, e := range strings.Split(v, ",") {
			name, q, _ := strings.Cut(strings.TrimSpace(e), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localPath returns next if it is a path of this UI (no other host, no
// scheme), else the default page: sign-in never redirects off the site.
func localPath(next string) string {
	const home = Prefix + "servers"
	if next == "" || len(next) > 2048 || !strings.HasPrefix(next, Prefix) || strings.ContainsAny(next, "\\\r\n") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") {
		return home
	}
	if path.Clean(u.Path) != strings.TrimSuffix(u.Path, "/") && path.Clean(u.Path)+"/" != u.Path {
		return home
	}
	return u.RequestURI()
}

// statusOf maps an auth error to an HTTP status, as the API does.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	var de *policy.DeniedError
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrAccessDenied), errors.As(err, &de):
		return http.StatusForbidden
	case errors.Is(err, auth.ErrBadRequest):
		return http.StatusBadRequest
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, storage.ErrAlreadyExists), errors.Is(err, storage.ErrCompareFailed), errors.Is(err, auth.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNotAvailable):
		return http.StatusNotImplemented
	case errors.Is(err, ErrAuthUnreachable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// message is what a person is shown for err: the short reason auth gives
// (details are in the audit log), or a generic line for internal errors.
func (h *Handler) message(err error) string {
	if statusOf(err) == http.StatusInternalServerError {
		h.log.Error("web internal error", "err", err)
		return "internal error (see the auth service log)"
	}
	if errors.Is(err, ErrAuthUnreachable) {
		h.log.Warn("web: auth not reached", "err", err)
		return ErrAuthUnreachable.Error()
	}
	return err.Error()
}
