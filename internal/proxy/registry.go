package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/tunnel"
)

type nodeTunnel struct {
	conn ssh.Conn
	// peer is set instead of conn for a node whose tunnel ends at a peer
	// proxy (peerconn.go).
	peer *peerRoute
	// noDialBack is set once the node failed to dial back a data
	// connection; its sessions then use channels on the tunnel.
	noDialBack atomic.Bool
	mu         sync.RWMutex
	node       auth.Node
}

func (t *nodeTunnel) snapshot() auth.Node {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// The label map is shared, not copied: a heartbeat replaces it whole
	// and nothing modifies one in place, so a listing of 10,000 nodes
	// does not copy 10,000 maps (callers must not modify it either).
	return t.node
}

// Registry holds the nodes connected to this proxy. It is the cluster's
// live inventory: a node is listed exactly while its tunnel is up.
type Registry struct {
	mu      sync.RWMutex
	tunnels map[string]*nodeTunnel
	m       *Metrics
	// onChange, when set (peering), is told of every node that came up,
	// changed or went down.
	onChange func(nodeID string)
}

func (r *Registry) changed(id string) {
	if r.onChange != nil {
		r.onChange(id)
	}
}

func newRegistry(m *Metrics) *Registry {
	return &Registry{tunnels: map[string]*nodeTunnel{}, m: m}
}

// Nodes returns a snapshot of connected nodes.
func (r *Registry) Nodes() []auth.Node {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]auth.Node, 0, len(r.tunnels))
	for _, t := range r.tunnels {
		out = append(out, t.snapshot())
	}
	return out
}

// Len returns the number of connected nodes.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tunnels)
}

func (r *Registry) get(id string) *nodeTunnel {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tunnels[id]
}

// add registers a tunnel, replacing (and closing) an older one of the same
// node: a node that reconnects before its old connection timed out.
func (r *Registry) add(t *nodeTunnel) {
	r.mu.Lock()
	old := r.tunnels[t.node.ID]
	r.tunnels[t.node.ID] = t
	n := len(r.tunnels)
	r.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
	r.m.Tunnels.Set(float64(n))
	r.changed(t.node.ID)
}

func (r *Registry) remove(t *nodeTunnel) {
	r.mu.Lock()
	if r.tunnels[t.node.ID] == t {
		delete(r.tunnels, t.node.ID)
	}
	n := len(r.tunnels)
	r.mu.Unlock()
	r.m.Tunnels.Set(float64(n))
	r.changed(t.node.ID)
}

const tunnelKeepalive = 15 * time.Second

func (s *Server) serveTunnel(sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, conn *tunnel.BufferedConn) {
	id := sconn.Permissions.Extensions[extNodeID]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := s.cfg.Directory.GetNodeRegistration(ctx, id)
	if err != nil {
		s.log.Warn("tunnel from unregistered node refused", "node_id", id, "err", err)
		return
	}
	if reg.Kind == auth.RegistrationKube {
		// Every Kubernetes request and stream crosses this tunnel: read
		// it in large pieces, without a quick ACK before each read (the
		// agent, Warden's own, turns Nagle's algorithm off).
		conn.Buffer()
		conn.QuickAckOff()
		s.serveKubeTunnel(sconn, chans, reqs, reg)
		return
	}
	now := s.cfg.Now().UTC()
	t := &nodeTunnel{conn: sconn, node: auth.Node{ID: reg.ID, Name: reg.Name, Hostname: reg.Hostname, Since: now, LastSeen: now}}
	go func() {
		for nc := range chans {
			_ = nc.Reject(ssh.Prohibited, "nodes may not open channels on the proxy")
		}
	}()
	// The first heartbeat (labels) must arrive before the node is listed.
	first := true
	defer func() {
		if !first {
			s.reg.remove(t)
			s.log.Info("node tunnel closed", "node", reg.Name, "node_id", id)
		}
	}()
	s.serveHeartbeats(sconn, reqs, func(p []byte) error {
		var hb tunnel.Heartbeat
		if err := decodeHeartbeat(p, &hb); err != nil {
			return err
		}
		t.mu.Lock()
		t.node.Labels, t.node.Version, t.node.LastSeen = hb.Labels, hb.Version, s.cfg.Now().UTC()
		t.mu.Unlock()
		if !first {
			s.reg.changed(t.node.ID) // labels may have changed
		}
		if first {
			first = false
			s.reg.add(t)
			s.log.Info("node tunnel up", "node", reg.Name, "node_id", id, "remote", sconn.RemoteAddr().String())
		}
		return nil
	})
}

// serveHeartbeats answers the requests on an agent's (node's or kube
// agent's) tunnel until it ends, its peer stops answering keepalives or
// the proxy shuts down: beat takes each heartbeat's payload, and its
// error refuses the request; other requests are refused.
func (s *Server) serveHeartbeats(sconn ssh.Conn, reqs <-chan *ssh.Request, beat func(payload []byte) error) {
	keepalive := time.NewTicker(tunnelKeepalive)
	defer keepalive.Stop()
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				return
			}
			if req.Type != tunnel.RequestHeartbeat {
				_ = req.Reply(false, nil)
				continue
			}
			if err := beat(req.Payload); err != nil {
				_ = req.Reply(false, []byte(err.Error()))
				continue
			}
			_ = req.Reply(true, nil)
		case <-keepalive.C:
			// A dead peer (no FIN) is noticed here, and the agent leaves the
			// inventory.
			done := make(chan error, 1)
			go func() {
				_, _, err := sconn.SendRequest("keepalive@openssh.com", true, nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					return
				}
			case <-time.After(tunnelKeepalive):
				return
			}
		case <-s.shutdown:
			return
		}
	}
}

func decodeHeartbeat(p []byte, hb *tunnel.Heartbeat) error {
	if len(p) > maxJSONBody {
		return errors.New("heartbeat too large")
	}
	if err := json.Unmarshal(p, hb); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if len(hb.Labels) > 64 || len(hb.Version) > 64 {
		return errors.New("heartbeat: too many labels")
	}
	for k, v := range hb.Labels {
		if k == "" || len(k) > 256 || len(v) > 256 {
			return fmt.Errorf("heartbeat: invalid label %q", k)
		}
	}
	return nil
}
