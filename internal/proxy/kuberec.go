package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/kubestream"
	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/recording"
)

// Sessions of kubectl exec and attach. The proxy is where they are
// recorded: it is the one place every stream passes in the clear (TLS
// ends there), in the protocol the client speaks (WebSocket
// v5.channel.k8s.io, or SPDY/3.1 for older clients), and it already
// records agentless servers' sessions into auth's recording store
// (recordTarget), so a kube agent needs no recording path of its own and
// its credentials stay its only secret. The upgraded stream is read
// through kubestream.Tap: a malformed frame ends that stream only. Each
// session is audited as a node's (session.start, exec, session.end, in
// the kube agent's name), lists in warden sessions ls while it lasts,
// and a terminal session's output is recorded as asciicast, completed
// with its length and SHA-256 (recording.complete).

// kubeSessionDirectory is what kube sessions need from auth (auth.Server
// has it).
type kubeSessionDirectory interface {
	EmitEvents(ctx context.Context, c auth.Caller, events []audit.Event) error
	AppendRecording(ctx context.Context, c auth.Caller, meta recording.Meta, offset int64, data []byte) (int64, error)
	CompleteRecording(ctx context.Context, c auth.Caller, sessionID string, length int64, sha string, interrupted bool) error
}

// maxKubeStatus bounds the error channel kept for the exit code.
const maxKubeStatus = 64 << 10

// kubeSessionTransport returns the transport for a request: for exec and
// attach, base with the upgraded stream tapped, audited and recorded.
//
// The session's id joins the live request's lock subject, so a lock on
// the session (warden lock --session, the web UI's Terminate) ends it.
func (s *Server) kubeSessionTransport(base http.RoundTripper, live *kubeLive, agentID string, q map[string][]string) http.RoundTripper {
	c, remote, cluster, res := live.caller, live.remote, live.cluster, live.res
	if res.Verb != "create" || (res.Kind != "pods/exec" && res.Kind != "pods/attach") {
		return base
	}
	dir, ok := s.cfg.Directory.(kubeSessionDirectory)
	if !ok {
		return base
	}
	first := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	ks := &kubeSession{s: s, dir: dir, id: newSessionID(), user: c.User, ownerRoles: c.Roles, remote: remote, cluster: cluster.Name, clusterInfo: cluster,
		agent: auth.Caller{Kind: auth.KindNode, NodeID: agentID}, kind: "kube-" + strings.TrimPrefix(res.Kind, "pods/"),
		namespace: res.Namespace, pod: res.Name, container: truncate(first("container"), 253),
		command: truncate(strings.Join(q["command"], " "), 1024), tty: first("tty") == "true" || first("tty") == "1"}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			return resp, err
		}
		proto, ok := kubestream.Detect(resp)
		rwc, isConn := resp.Body.(io.ReadWriteCloser)
		if !ok || !isConn {
			// A stream that cannot be read cannot be recorded or
			// audited: refused.
			_ = resp.Body.Close()
			return refusedResponse(req, http.StatusBadGateway, "BadGateway", fmt.Sprintf("warden: streaming protocol %q (upgrade %q) is not one Warden can record",
				resp.Header.Get("Sec-WebSocket-Protocol"), resp.Header.Get("Upgrade"))), nil
		}
		ks.ctx, ks.protocol = req.Context(), "websocket "+proto.Name
		if proto.SPDY {
			ks.protocol = strings.TrimSpace("SPDY/3.1 " + proto.Name)
		}
		opts, err := s.kubeSessionOptions(req.Context(), live, ks.agent)
		if err != nil {
			_ = resp.Body.Close()
			return refusedResponse(req, http.StatusServiceUnavailable, "ServiceUnavailable", "warden: the session's options: "+err.Error()), nil
		}
		ks.mode, ks.recordInput = recordMode(opts.RecordSession), opts.RecordInput
		if err := ks.start(); err != nil {
			_ = resp.Body.Close()
			return refusedResponse(req, http.StatusServiceUnavailable, "ServiceUnavailable", "warden: "+err.Error()), nil
		}
		s.kube.sessions.Store(ks.id, ks)
		s.kube.mu.Lock()
		live.sub.Sessions = append(live.sub.Sessions, ks.id)
		sub := live.sub
		s.kube.mu.Unlock()
		// A lock on the session made before it was known.
		if err := s.cfg.Directory.CheckLock(sub); err != nil {
			live.cancel(errors.New(kubeReason(err)))
		}
		tap := kubestream.NewTap(rwc, proto, ks, ks.end)
		ks.mu.Lock()
		ks.tap = tap
		ks.mu.Unlock()
		if ks.tty && ks.mode == policy.RecordStrict && ks.recording(80, 24) == nil {
			// No recording, no session.
			msg := "session recording is required by your roles but is unavailable"
			ks.setFailReason("recording unavailable")
			_ = tap.Close()
			return refusedResponse(req, http.StatusForbidden, "Forbidden", "warden: "+msg), nil
		}
		resp.Body = tap
		return resp, nil
	})
}

// recordMode is a role's record_session as kube sessions apply it:
// unset is best_effort, anything unknown strict (fail closed).
func recordMode(m string) string {
	switch m {
	case "", policy.RecordBestEffort:
		return policy.RecordBestEffort
	case policy.RecordOff:
		return policy.RecordOff
	}
	return policy.RecordStrict
}

// kubeSessionOptions merges the session options (record_session,
// record_input) of the caller's current roles: the strictest wins
// (policy.MergeOptions).
func (s *Server) kubeSessionOptions(ctx context.Context, live *kubeLive, agent auth.Caller) (policy.EffectiveOptions, error) {
	rl, ok := s.cfg.Directory.(kubeRoleLister)
	if !ok {
		return policy.EffectiveOptions{}, errors.New("this proxy cannot read roles")
	}
	cur, err := s.cfg.Directory.CurrentCaller(ctx, live.caller, "kube", live.remote)
	if err != nil {
		return policy.EffectiveOptions{}, errors.New(kubeReason(err))
	}
	all, err := rl.ListRoles(ctx, agent)
	if err != nil {
		return policy.EffectiveOptions{}, err
	}
	roles := slices.DeleteFunc(all, func(r *policy.Role) bool { return r == nil || !slices.Contains(cur.Roles, r.Metadata.Name) })
	return policy.MergeOptions(roles), nil
}

// refusedResponse answers a request with a Kubernetes Status instead of
// the upgrade (kubectl prints its message).
func refusedResponse(req *http.Request, code int, reason, msg string) *http.Response {
	rec := httptest.NewRecorder()
	kubeStatus(rec, code, reason, msg)
	resp := rec.Result()
	resp.Request = req
	return resp
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// kubeSession is one exec or attach stream.
type kubeSession struct {
	s                                   *Server
	dir                                 kubeSessionDirectory
	ctx                                 context.Context
	id, user, remote, cluster, kind     string
	namespace, pod, container, protocol string
	command                             string
	tty                                 bool
	agent                               auth.Caller
	ownerRoles                          []string
	mode                                string // record_session: best_effort, strict or off
	recordInput                         bool
	clusterInfo                         auth.KubeCluster
	// observers are the users who joined (kubejoin.go), under obsMu.
	obsMu     sync.Mutex
	observers map[*kubeObserver]struct{}
	obsClosed bool

	mu       sync.Mutex
	tap      *kubestream.Tap
	failWhy  string
	rec      *proxyRecording
	recTried bool
	status   []byte
	ended    bool
}

func (k *kubeSession) fields() map[string]any {
	f := map[string]any{"kind": k.kind, "tty": k.tty, "kubernetes_cluster": k.cluster, "kubernetes_namespace": k.namespace,
		"kubernetes_pod": k.pod, "protocol": k.protocol, "recorded_by": "proxy"}
	if k.container != "" {
		f["kubernetes_container"] = k.container
	}
	if k.command != "" {
		f["command"] = k.command
	}
	return f
}

func (k *kubeSession) setFailReason(why string) {
	k.mu.Lock()
	if k.failWhy == "" {
		k.failWhy = why
	}
	k.mu.Unlock()
}

// login is what the session's login column shows: the pod.
func (k *kubeSession) login() string { return k.namespace + "/" + k.pod }

func (k *kubeSession) emit(evs ...audit.Event) error {
	return k.dir.EmitEvents(context.Background(), k.agent, evs)
}

// start audits the session's start (which also lists it in sessions ls,
// and lets auth accept its recording).
func (k *kubeSession) start() error {
	f := k.fields()
	f["recorded"] = k.tty && k.mode != policy.RecordOff
	f["record_mode"] = k.mode
	ev := audit.Event{Event: audit.SessionStart, User: k.user, Login: k.login(), SessionID: k.id, RemoteAddr: k.remote,
		Success: true, Fields: f}
	if err := k.emit(ev); err != nil {
		return fmt.Errorf("audit the session's start: %w", err)
	}
	return nil
}

// recording starts the terminal's recording at its first size or output
// (nil: none, or it could not start: best effort, as SSH's default).
func (k *kubeSession) recording(width, height uint16) *proxyRecording {
	if !k.tty || k.mode == policy.RecordOff {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.recTried || k.ended {
		return k.rec
	}
	k.recTried = true
	now := time.Now()
	meta := recording.Meta{SessionID: k.id, User: k.user, Login: k.login(), RemoteAddr: k.remote, Start: now}
	h := asciicast.Header{Width: int(max(width, 1)), Height: int(max(height, 1)), Timestamp: now.Unix(),
		Title: fmt.Sprintf("%s in pod %s/%s on kubernetes cluster %s", k.user, k.namespace, k.pod, k.cluster),
		Env:   map[string]string{"TERM": "xterm"}}
	strict := k.mode == policy.RecordStrict
	r, err := startProxyRecording(recordTarget{dir: k.dir, caller: k.agent, log: k.s.log}, meta, h, strict, func() {
		// Strict: a recording that fails ends the session.
		k.s.log.Error("kube session recording failed: ending the session (record_session strict)", "session", k.id)
		k.setFailReason("recording failed")
		k.mu.Lock()
		tap := k.tap
		k.mu.Unlock()
		if tap != nil {
			go tap.Close() // not from the recording's own goroutine: Close waits for it
		}
	})
	if err != nil {
		k.s.log.Warn("kube session recording could not start", "session", k.id, "err", err)
		return nil
	}
	k.rec = r
	return r
}

// Data is kubestream.Sink: output goes into the recording; the error
// channel's Status is kept for the exit code.
func (k *kubeSession) Data(st kubestream.Stream, p []byte) {
	switch st {
	case kubestream.Stdout, kubestream.Stderr:
		if r := k.recording(80, 24); r != nil {
			r.output(p)
		}
		k.broadcast(p)
	case kubestream.Stdin:
		if k.recordInput {
			k.mu.Lock()
			r := k.rec
			k.mu.Unlock()
			if r != nil {
				r.input(p)
			}
		}
	case kubestream.Error:
		k.mu.Lock()
		if len(k.status)+len(p) <= maxKubeStatus {
			k.status = append(k.status, p...)
		}
		k.mu.Unlock()
	}
}

// Resize is kubestream.Sink.
func (k *kubeSession) Resize(width, height uint16) {
	k.mu.Lock()
	started := k.recTried
	k.mu.Unlock()
	r := k.recording(width, height)
	if r != nil && started {
		r.resize(int(max(width, 1)), int(max(height, 1)))
	}
}

// end completes the recording and audits the end (Tap's onClose).
func (k *kubeSession) end(streamErr error) {
	k.mu.Lock()
	if k.ended {
		k.mu.Unlock()
		return
	}
	k.ended = true
	r, status := k.rec, k.status
	k.mu.Unlock()
	k.s.kube.sessions.Delete(k.id)
	k.closeObservers()
	reason := ""
	if cause := context.Cause(k.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		reason = cause.Error()
	}
	if streamErr != nil {
		reason = streamErr.Error()
		k.s.log.Warn("kube session stream ended: malformed", "session", k.id, "err", streamErr)
	}
	k.mu.Lock()
	if k.failWhy != "" {
		reason = k.failWhy
	}
	k.mu.Unlock()
	if r != nil {
		r.close(reason != "")
	}
	code := kubeExitCode(status)
	f := k.fields()
	f["exit_code"] = code
	var evs []audit.Event
	if k.kind == "kube-exec" {
		evs = append(evs, audit.Event{Event: audit.Exec, User: k.user, Login: k.login(), SessionID: k.id, RemoteAddr: k.remote,
			Success: code == 0, Fields: f})
	}
	endFields := k.fields()
	endFields["exit_code"] = code
	if reason != "" {
		endFields["reason"] = reason
	}
	evs = append(evs, audit.Event{Event: audit.SessionEnd, User: k.user, Login: k.login(), SessionID: k.id, RemoteAddr: k.remote,
		Success: true, Fields: endFields})
	if err := k.emit(evs...); err != nil {
		k.s.log.Error("audit kube session end", "session", k.id, "err", err)
	}
}

// kubeExitCode reads the exit code from the error channel's Status: 0 on
// Success, the ExitCode cause on failure, -1 when there is none (the
// stream was cut).
func kubeExitCode(status []byte) int {
	var st struct {
		Status  string `json:"status"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if len(status) == 0 || json.Unmarshal(status, &st) != nil {
		return -1
	}
	if st.Status == "Success" {
		return 0
	}
	for _, c := range st.Details.Causes {
		if c.Reason == "ExitCode" {
			if n, err := strconv.Atoi(c.Message); err == nil {
				return n
			}
		}
	}
	return -1
}
