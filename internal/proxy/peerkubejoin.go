package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"

	"github.com/warden-sh/warden/internal/auth"
)

// Joining a kube session through a peer: a kube session lives at the
// proxy that reaches its cluster's agent (A), which records it; a user
// may ask any proxy (B) to join it, with warden join or the web UI. B
// checks the user (current state, locks), then asks its live peers
// through which kube agents are connected — the session's ID names no
// proxy — each with a PeerDial carrying the session and the mode. A
// decides again from the user's current state with JoinKube's rules
// (locks, get on the pod, join_sessions), audits the join and the leave
// (with via_proxy: B), and ends the participation on a lock as for its
// own joiners. A refusal names its HTTP status, so that B tries the next
// peer only when the session is not there. After A's OK the connection
// carries the participation in frames:
//
//	frame: type (1 byte) | uint32 length (big endian) | payload
//	A→B: 'o' output, 'e' the end (payload: why)
//	B→A: 'i' a peer's input; the end of B's stream: the joiner left.

const (
	// maxKubeSessionID bounds a session ID on the peer wire.
	maxKubeSessionID = 64
	// maxPeerJoinFrame bounds a frame's payload (output is passed in the
	// chunks the session's relay reads, at most 32 KiB; input at most
	// maxKubeJoinInput).
	maxPeerJoinFrame = 1 << 20
	// maxPeerJoinTries bounds the peers asked for a session.
	maxPeerJoinTries = 16

	peerJoinOutput = 'o'
	peerJoinEnd    = 'e'
	peerJoinInput  = 'i'
)

// peerJoinRefusal is a join refused by the peer, as it travels in the
// peer wire's refusal.
type peerJoinRefusal struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func writePeerJoinFrame(w io.Writer, typ byte, p []byte) error {
	if len(p) > maxPeerJoinFrame {
		return fmt.Errorf("peer join frame of %d bytes", len(p))
	}
	b := make([]byte, 5, 5+len(p))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	_, err := w.Write(append(b, p...))
	return err
}

func readPeerJoinFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxPeerJoinFrame {
		return 0, nil, fmt.Errorf("peer join frame of %d bytes (limit %d)", n, maxPeerJoinFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

// servePeerKubeJoin serves a join forwarded by peer peerID (handlePeer
// has checked the user's certificate and current state): decided here
// as any join, then carried over tc.
func (s *Server) servePeerKubeJoin(tc *tls.Conn, peerID string, req *PeerDial, refuse func(string)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := s.joinKube(ctx, req.Caller.caller(), req.ClientAddr, req.KubeSession, req.KubeJoinMode, peerID)
	if err != nil {
		r := peerJoinRefusal{Code: http.StatusInternalServerError, Reason: "InternalError", Message: "warden: " + err.Error()}
		var je *KubeJoinError
		if errors.As(err, &je) {
			r = peerJoinRefusal{Code: je.Code, Reason: je.Reason, Message: je.Msg}
		}
		js, _ := json.Marshal(r)
		refuse(string(js))
		return
	}
	defer p.Leave()
	if _, err := tc.Write([]byte{peerStatusOK}); err != nil {
		p.setWhy("left")
		return
	}
	var wmu sync.Mutex
	write := func(typ byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writePeerJoinFrame(tc, typ, b)
	}
	go func() {
		// The joiner's input (peers), until they leave.
		defer cancel()
		br := bufio.NewReader(tc)
		for {
			typ, b, err := readPeerJoinFrame(br)
			if err != nil {
				return
			}
			if typ != peerJoinInput || len(b) > maxKubeJoinInput {
				_ = write(peerJoinEnd, []byte("warden: malformed input from the joining proxy"))
				return
			}
			if err := p.Input(b); err != nil {
				p.setWhy("left")
				_ = write(peerJoinEnd, []byte("warden: "+err.Error()))
				return
			}
		}
	}()
	for {
		b, err := p.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.setWhy("left")
				return
			}
			_ = write(peerJoinEnd, []byte(err.Error()))
			return
		}
		if err := write(peerJoinOutput, b); err != nil {
			p.setWhy("left")
			return
		}
	}
}

// kubeJoinPeers are the live peers through which kube agents are
// connected: where a kube session not found here may live.
func (p *peering) kubeJoinPeers() []proxyRecord {
	p.mu.RLock()
	ids := map[string]bool{}
	for _, by := range p.kube {
		for proxyID := range by {
			if proxyID != p.cfg.ID {
				ids[proxyID] = true
			}
		}
	}
	p.mu.RUnlock()
	var out []proxyRecord
	for id := range ids {
		p.mu.RLock()
		pr, ok := p.proxies[id]
		p.mu.RUnlock()
		if ok && p.live(id) {
			out = append(out, pr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// joinKubePeers joins session id through the peer where it lives (see
// above); c is the user's certificate identity, cur their current state.
func (s *Server) joinKubePeers(ctx context.Context, c, cur auth.Caller, remote, id, mode string) (*KubeParticipant, error) {
	notFound := &KubeJoinError{Code: http.StatusNotFound, Reason: "NotFound",
		Msg: fmt.Sprintf("warden: no live kubernetes session %.64q on any proxy (see: warden sessions ls)", id)}
	if len(id) > maxKubeSessionID || validatePeerID(id) != nil {
		return nil, notFound
	}
	if err := s.cfg.Directory.CheckLock(cur.LockSubject()); err != nil {
		return nil, &KubeJoinError{Code: http.StatusForbidden, Reason: "Forbidden", Msg: "warden: " + kubeReason(err)}
	}
	// The web UI gives the browser's address without a port.
	clientAddr := remote
	if _, err := netip.ParseAddrPort(remote); err != nil {
		ip, err := netip.ParseAddr(remote)
		if err != nil {
			return nil, &KubeJoinError{Code: http.StatusBadRequest, Reason: "BadRequest", Msg: "warden: the joiner's address is not an IP address"}
		}
		clientAddr = netip.AddrPortFrom(ip, 0).String()
	}
	d := &PeerDial{KubeSession: id, KubeJoinMode: mode, ClientAddr: clientAddr, Caller: peerCallerOf(c)}
	var unreachable []error
	for i, pr := range s.peers.kubeJoinPeers() {
		if i == maxPeerJoinTries {
			break
		}
		conn, err := s.dialPeerWith(ctx, pr, d)
		if err == nil {
			return newPeerKubeParticipant(s, conn, cur.User, remote, mode), nil
		}
		msg, refused := errIsPeerRefusal(err)
		if !refused {
			s.peers.markUnreachable(pr.ID)
			unreachable = append(unreachable, err)
			continue
		}
		var r peerJoinRefusal
		if json.Unmarshal([]byte(msg), &r) != nil || r.Code < 400 || r.Code > 599 {
			// A refusal before the join was decided (the user, a lock).
			return nil, &KubeJoinError{Code: http.StatusForbidden, Reason: "Forbidden", Msg: "warden: " + msg}
		}
		if r.Code == http.StatusNotFound && r.Reason == "NotFound" {
			continue
		}
		return nil, &KubeJoinError{Code: r.Code, Reason: r.Reason, Msg: r.Message}
	}
	if len(unreachable) > 0 {
		return nil, &KubeJoinError{Code: http.StatusServiceUnavailable, Reason: "ServiceUnavailable",
			Msg: fmt.Sprintf("warden: session %.64q is not on this proxy and %d peer proxies could not be reached: %v", id, len(unreachable), errors.Join(unreachable...))}
	}
	return nil, notFound
}

// peerKubeJoin is a participation relayed from the peer where the
// session lives.
type peerKubeJoin struct {
	conn net.Conn
	out  chan []byte
	wmu  sync.Mutex
	once sync.Once
	mu   sync.Mutex
	why  string
}

func newPeerKubeParticipant(s *Server, conn net.Conn, user, remote, mode string) *KubeParticipant {
	j := &peerKubeJoin{conn: conn, out: make(chan []byte, kubeJoinBuffer)}
	go j.read()
	ctx, cancel := context.WithCancelCause(context.Background())
	return &KubeParticipant{s: s, user: user, remote: remote, mode: mode, ctx: ctx, cancel: cancel, peer: j, why: "left"}
}

// read passes the peer's frames on until the end.
func (j *peerKubeJoin) read() {
	defer close(j.out)
	br := bufio.NewReader(j.conn)
	for {
		typ, b, err := readPeerJoinFrame(br)
		if err != nil {
			j.setWhy("the proxy where the session runs ended the connection")
			return
		}
		switch typ {
		case peerJoinOutput:
			j.out <- b // blocks: the peer drops a joiner that falls behind
		case peerJoinEnd:
			j.setWhy(string(b))
			return
		default:
			j.setWhy("malformed frame from the proxy where the session runs")
			return
		}
	}
}

func (j *peerKubeJoin) setWhy(why string) {
	j.mu.Lock()
	if j.why == "" {
		j.why = why
	}
	j.mu.Unlock()
}

func (j *peerKubeJoin) next(ctx context.Context) ([]byte, error) {
	select {
	case b, ok := <-j.out:
		if !ok {
			j.mu.Lock()
			why := j.why
			j.mu.Unlock()
			if why == ErrKubeSessionEnded.Error() {
				return nil, ErrKubeSessionEnded
			}
			return nil, errors.New(why)
		}
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (j *peerKubeJoin) input(b []byte) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	for len(b) > 0 {
		chunk := b[:min(len(b), maxKubeJoinInput)]
		b = b[len(chunk):]
		if err := writePeerJoinFrame(j.conn, peerJoinInput, chunk); err != nil {
			return ErrKubeSessionEnded
		}
	}
	return nil
}

func (j *peerKubeJoin) leave() {
	j.once.Do(func() {
		_ = j.conn.Close()
		// Unblock read if it waits on a full channel.
		go func() {
			for range j.out {
			}
		}()
	})
}
