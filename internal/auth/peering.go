package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// Proxy peering for proxies running apart (docs/postgres.md "Proxy
// peering"): they have no storage of their own, so they keep their peer
// record and tunnel keys under /peering/ through these calls, get their
// peering certificate here, and follow the other proxies' keys with a
// watch. The proxies that run in auth's process write the same keys to the
// database directly (internal/proxy/peers.go), so both kinds peer with
// each other. A proxy is its verified certificate: it writes its own keys
// only (its registration ID is its peer ID), publishes only registered
// nodes, and may delete another proxy's tunnel keys only once that proxy's
// record is gone.
const (
	prefixPeering        = "/peering/"
	prefixPeeringProxies = "/peering/proxies/"
	prefixPeeringTunnels = "/peering/tunnels/"
	prefixPeeringKube    = "/peering/kube/"
	// maxPeerKubeClusters bounds the clusters of one agent's record.
	maxPeerKubeClusters = 256
	// maxPeerRecord bounds one peering key's value.
	maxPeerRecord = 16 << 10
	// maxPeerRecordTTL bounds a proxy record's life (proxies renew it
	// every 2 s with a 10 s TTL).
	maxPeerRecordTTL = time.Minute
	// PeerCertTTL is the life of a peering certificate.
	PeerCertTTL = 24 * time.Hour
)

// peerProxyRecord and peerTunnelRecord are the values the proxies write
// (proxy.proxyRecord and proxy.tunnelRecord).
type peerProxyRecord struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

type peerKubeRecord struct {
	Proxy    string        `json:"proxy"`
	Agent    string        `json:"agent"`
	Clusters []KubeCluster `json:"clusters"`
}

type peerTunnelRecord struct {
	Proxy string `json:"proxy"`
	Node  Node   `json:"node"`
}

// joinedProxy refuses a proxy caller without a registration ID.
func joinedProxy(c Caller) error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: only a joined proxy peers", ErrUnauthenticated)
	}
	return nil
}

// ProxyPeerPut writes one of the calling proxy's peering keys: its record
// (with a TTL of at most a minute) or the tunnel of a registered node it
// holds.
func (s *Server) ProxyPeerPut(ctx context.Context, c Caller, it storage.Item) (int64, error) {
	if err := s.authorize(c, "ProxyPeerPut"); err != nil {
		return 0, err
	}
	if err := joinedProxy(c); err != nil {
		return 0, err
	}
	if len(it.Value) > maxPeerRecord {
		return 0, badRequest("peering record of %d bytes, at most %d", len(it.Value), maxPeerRecord)
	}
	dec := func(v any) error {
		d := json.NewDecoder(strings.NewReader(string(it.Value)))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			return badRequest("peering record: %v", err)
		}
		if d.More() {
			return badRequest("peering record: trailing data")
		}
		return nil
	}
	switch {
	case strings.HasPrefix(it.Key, prefixPeeringProxies):
		if it.Key != prefixPeeringProxies+c.NodeID {
			return 0, fmt.Errorf("%w: a proxy writes its own peering record only", ErrAccessDenied)
		}
		var r peerProxyRecord
		if err := dec(&r); err != nil {
			return 0, err
		}
		if r.ID != c.NodeID {
			return 0, fmt.Errorf("%w: a proxy's record names itself", ErrAccessDenied)
		}
		host, port, err := net.SplitHostPort(r.Addr)
		if err != nil || host == "" || port == "" || port == "0" || len(r.Addr) > 300 {
			return 0, badRequest("peer address %q", truncateString(r.Addr))
		}
		if it.Expires.IsZero() || it.Expires.After(s.now().Add(maxPeerRecordTTL)) {
			return 0, badRequest("a proxy's peering record lives at most %v", maxPeerRecordTTL)
		}
	case strings.HasPrefix(it.Key, prefixPeeringTunnels):
		nodeID, proxyID, ok := strings.Cut(strings.TrimPrefix(it.Key, prefixPeeringTunnels), "/")
		if !ok || proxyID != c.NodeID {
			return 0, fmt.Errorf("%w: a proxy writes its own tunnel keys only", ErrAccessDenied)
		}
		var r peerTunnelRecord
		if err := dec(&r); err != nil {
			return 0, err
		}
		if r.Proxy != c.NodeID || r.Node.ID != nodeID || r.Node.Agentless {
			return 0, badRequest("tunnel record for node %q of proxy %q at key %q", truncateString(r.Node.ID), truncateString(r.Proxy), truncateString(it.Key))
		}
		// Only registered nodes: a proxy cannot invent one.
		reg, err := s.GetNodeRegistration(ctx, nodeID)
		if err != nil {
			return 0, badRequest("node %s: %v", truncateString(nodeID), err)
		}
		if reg.Kind != "" || reg.Name != r.Node.Name || reg.Hostname != r.Node.Hostname {
			return 0, badRequest("node %s is not the registered node %q", nodeID, reg.Name)
		}
	case strings.HasPrefix(it.Key, prefixPeeringKube):
		agentID, proxyID, ok := strings.Cut(strings.TrimPrefix(it.Key, prefixPeeringKube), "/")
		if !ok || proxyID != c.NodeID {
			return 0, fmt.Errorf("%w: a proxy writes its own kube keys only", ErrAccessDenied)
		}
		var r peerKubeRecord
		if err := dec(&r); err != nil {
			return 0, err
		}
		if r.Proxy != c.NodeID || r.Agent != agentID || len(r.Clusters) == 0 || len(r.Clusters) > maxPeerKubeClusters {
			return 0, badRequest("kube record for agent %q of proxy %q at key %q", truncateString(r.Agent), truncateString(r.Proxy), truncateString(it.Key))
		}
		// Only registered kube agents, with the clusters named rightly.
		reg, err := s.GetNodeRegistration(ctx, agentID)
		if err != nil {
			return 0, badRequest("kube agent %s: %v", truncateString(agentID), err)
		}
		if reg.Kind != RegistrationKube {
			return 0, badRequest("%s is not a kube agent", truncateString(agentID))
		}
		for _, k := range r.Clusters {
			if k.AgentID != agentID {
				return 0, badRequest("cluster %q of another agent", truncateString(k.Name))
			}
			if err := validateNodeName("kubernetes cluster name", k.Name); err != nil {
				return 0, err
			}
		}
	default:
		return 0, badRequest("not a peering key")
	}
	out, err := s.b.Put(ctx, storage.Item{Key: it.Key, Value: it.Value, Expires: it.Expires})
	if err != nil {
		return 0, err
	}
	return out.Revision, nil
}

// ProxyPeerDelete deletes one of the calling proxy's peering keys, or the
// tunnel key of a proxy whose record is gone (a proxy that died: its
// peers clean up after it).
func (s *Server) ProxyPeerDelete(ctx context.Context, c Caller, key string) error {
	if err := s.authorize(c, "ProxyPeerDelete"); err != nil {
		return err
	}
	if err := joinedProxy(c); err != nil {
		return err
	}
	switch {
	case key == prefixPeeringProxies+c.NodeID:
	case strings.HasPrefix(key, prefixPeeringTunnels), strings.HasPrefix(key, prefixPeeringKube):
		rest := strings.TrimPrefix(strings.TrimPrefix(key, prefixPeeringTunnels), prefixPeeringKube)
		_, proxyID, ok := strings.Cut(rest, "/")
		if !ok || proxyID == "" || strings.Contains(proxyID, "/") {
			return badRequest("not a tunnel key")
		}
		if proxyID != c.NodeID {
			// Another proxy's tunnel or kube key: only once its record is gone
			// (expired records are not returned).
			_, err := s.b.Get(ctx, prefixPeeringProxies+proxyID)
			if err == nil {
				return fmt.Errorf("%w: proxy %s is alive; it deletes its own tunnel keys", ErrAccessDenied, truncateString(proxyID))
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: a proxy deletes its own peering keys only", ErrAccessDenied)
	}
	// Deleting a key already gone succeeds: the caller wanted it gone.
	if err := s.b.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

// ProxyPeerList lists the peering keys (every proxy's record and
// tunnels).
func (s *Server) ProxyPeerList(ctx context.Context, c Caller) ([]storage.Item, error) {
	if err := s.authorize(c, "ProxyPeerList"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	return s.b.List(ctx, prefixPeering, 0)
}

// ProxyPeerWatch follows the peering keys (the watch is in place when it
// returns: list after it, as for any watch).
func (s *Server) ProxyPeerWatch(ctx context.Context, c Caller) (<-chan storage.Event, error) {
	if err := s.authorize(c, "ProxyPeerWatch"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	return s.b.Watch(ctx, prefixPeering)
}

// IssueProxyPeerCert issues the calling proxy's peering certificate
// (ca.IssueProxyPeer) for a key: its registration ID is its peer ID.
func (s *Server) IssueProxyPeerCert(ctx context.Context, c Caller, publicKey string) ([]byte, error) {
	if err := s.authorize(c, "IssueProxyPeerCert"); err != nil {
		return nil, err
	}
	if err := joinedProxy(c); err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(publicKey)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	ttl := PeerCertTTL
	if s.cfg.NodeCertTTL > 0 && s.cfg.NodeCertTTL < ttl {
		ttl = s.cfg.NodeCertTTL
	}
	return s.ca.IssueProxyPeer(cryptoPublicKey(pub), c.NodeID, ttl)
}

func truncateString(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
