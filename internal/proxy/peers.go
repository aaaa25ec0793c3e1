package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/storage"
)

// Proxy peering: several proxies on one shared state (PostgreSQL), each
// holding the tunnels of the nodes that connected to it. Every proxy
// registers itself (ID, peer address, a heartbeat with a TTL) and the
// tunnels it holds, one key per (node, proxy), so that each proxy only
// ever writes and deletes its own keys. Each proxy keeps the whole
// picture in memory from a watch on the prefix; a user arriving at proxy B
// for a node whose tunnel ends at proxy A is connected through A: B dials
// A's peer listener over mutual TLS with certificates from the cluster CA
// (the proxy kind only) and forwards the dial it decided (peerwire.go).
const (
	peerPrefix        = "/peering/"
	peerProxiesPrefix = "/peering/proxies/"
	peerTunnelsPrefix = "/peering/tunnels/"
	// peerKubePrefix holds, per kube agent and proxy, the clusters the
	// agent serves through that proxy.
	peerKubePrefix = "/peering/kube/"
	// kubeDirty marks a kube agent's ID in the dirty and published sets
	// (node IDs never start with it).
	kubeDirty = "kube:"
	// DefaultPeerHeartbeat is how often a proxy renews its record.
	DefaultPeerHeartbeat = 2 * time.Second
	// DefaultPeerTTL is how long a proxy's record outlives its last
	// heartbeat: a proxy silent for longer is dead to its peers.
	DefaultPeerTTL = 10 * time.Second
	// peerDialTimeout bounds the peer's connection, handshake and reply
	// (the peer waits up to tunnel.DialBackTimeout for its node).
	peerDialTimeout = 20 * time.Second
	// peerConnectTimeout bounds the connection and TLS handshake alone:
	// a peer cut off the network (or frozen) is given up on in seconds, and
	// the dial tried through another peer holding the node's tunnel.
	peerConnectTimeout = 5 * time.Second
	peerCertRenew      = 0.5
)

// PeerConfig turns peering on.
type PeerConfig struct {
	// ID names this proxy among its peers (a storage key part; a fresh one
	// at each start).
	ID string
	// Addr is where peers reach this proxy's peer listener (host:port).
	Addr string
	// Store is the state shared by all proxies: the database for a proxy
	// in auth's process, auth's API for one running apart.
	Store PeerStore
	// Certificate returns this proxy's current peering certificate
	// (ca.IssueProxyPeer), used both ways.
	Certificate func() (*tls.Certificate, error)
	// Roots returns the cluster TLS CA pool.
	Roots func() *x509.CertPool
	// Heartbeat and TTL default to DefaultPeerHeartbeat and DefaultPeerTTL.
	Heartbeat, TTL time.Duration
}

// PeerStore is what peering needs of the shared state (storage.Backend
// has it): each proxy puts and deletes its own keys, and follows every
// proxy's with a watch, then a list.
type PeerStore interface {
	Put(ctx context.Context, it storage.Item) (storage.Item, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string, limit int) ([]storage.Item, error)
	Watch(ctx context.Context, prefix string, more ...string) (<-chan storage.Event, error)
}

type proxyRecord struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// expires is the item's expiry (not stored in the value).
	expires time.Time
}

type tunnelRecord struct {
	Proxy string    `json:"proxy"`
	Node  auth.Node `json:"node"`
	rev   int64
}

// kubeRecord is the clusters a kube agent serves through a proxy.
type kubeRecord struct {
	Proxy    string             `json:"proxy"`
	Agent    string             `json:"agent"`
	Clusters []auth.KubeCluster `json:"clusters"`
	rev      int64
}

type peering struct {
	s      *Server
	cfg    PeerConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	proxies map[string]proxyRecord
	tunnels map[string]map[string]tunnelRecord // node ID → proxy ID →
	kube    map[string]map[string]kubeRecord   // agent ID → proxy ID →
	revs    map[string]int64                   // key → revision seen
	synced  bool

	dirtyMu   sync.Mutex
	dirty     map[string]struct{}
	kick      chan struct{}
	published map[string]string // node ID → value written (publisher only)

	clientSessions tls.ClientSessionCache
	// unreachable is when a dial last failed to reach a peer (peer ID →
	// time.Time).
	unreachable sync.Map
}

func (s *Server) startPeering(cfg PeerConfig) error {
	if err := validatePeerID(cfg.ID); err != nil {
		return fmt.Errorf("proxy peering: id: %w", err)
	}
	if cfg.Store == nil || cfg.Certificate == nil || cfg.Roots == nil || cfg.Addr == "" {
		return errors.New("proxy peering: Store, Certificate, Roots and Addr are required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultPeerHeartbeat
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultPeerTTL
	}
	p := &peering{s: s, cfg: cfg, proxies: map[string]proxyRecord{}, tunnels: map[string]map[string]tunnelRecord{},
		kube: map[string]map[string]kubeRecord{},
		revs: map[string]int64{}, dirty: map[string]struct{}{}, kick: make(chan struct{}, 1), published: map[string]string{},
		clientSessions: tls.NewLRUClientSessionCache(256)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	// Registered before serving: peers learn this proxy before any tunnel
	// it publishes.
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := p.putSelf(ctx); err != nil {
		p.cancel()
		return fmt.Errorf("proxy peering: register: %w", err)
	}
	s.peers = p
	s.reg.onChange = p.markDirty
	s.kube.onChange = func(agentID string) { p.markDirty(kubeDirty + agentID) }
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.watch() }()
	go func() { defer p.wg.Done(); p.heartbeat() }()
	go func() { defer p.wg.Done(); p.publish() }()
	return nil
}

func (p *peering) selfKey() string { return peerProxiesPrefix + p.cfg.ID }

func tunnelKey(nodeID, proxyID string) string { return peerTunnelsPrefix + nodeID + "/" + proxyID }

func kubeKey(agentID, proxyID string) string { return peerKubePrefix + agentID + "/" + proxyID }

// keyOf is the key of a dirty or published ID (a node's, or a kube
// agent's with kubeDirty).
func (p *peering) keyOf(id string) string {
	if agent, ok := strings.CutPrefix(id, kubeDirty); ok {
		return kubeKey(agent, p.cfg.ID)
	}
	return tunnelKey(id, p.cfg.ID)
}

func (p *peering) putSelf(ctx context.Context) error {
	v, _ := json.Marshal(proxyRecord{ID: p.cfg.ID, Addr: p.cfg.Addr})
	_, err := p.cfg.Store.Put(ctx, storage.Item{Key: p.selfKey(), Value: v, Expires: time.Now().Add(p.cfg.TTL)})
	return err
}

// heartbeat renews the proxy's record. After a gap longer than the TTL
// (the database was unreachable, or this process stalled) peers may have
// removed its tunnels: it publishes them all again. It also removes the
// tunnels of proxies whose records expired.
func (p *peering) heartbeat() {
	last := time.Now()
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.TTL)
		err := p.putSelf(ctx)
		cancel()
		if err != nil {
			p.s.log.Warn("proxy peering: heartbeat failed", "err", err)
			continue
		}
		// Half the TTL: peers' clocks may see the record expire sooner.
		if time.Since(last) > p.cfg.TTL/2 {
			p.s.log.Info("proxy peering: registration renewed after a gap; publishing tunnels again")
			p.republish()
		} else {
			p.repairMissing()
		}
		last = time.Now()
		p.reapDead()
	}
}

// republish writes every tunnel key again: those of the local tunnels
// are put, and those published for tunnels gone meanwhile are deleted.
func (p *peering) republish() {
	p.dirtyMu.Lock()
	for id := range p.published {
		p.published[id] = "" // written again whatever it was
		p.dirty[id] = struct{}{}
	}
	for _, n := range p.s.reg.Nodes() {
		p.dirty[n.ID] = struct{}{}
	}
	for _, id := range p.s.kube.agentIDs() {
		p.dirty[kubeDirty+id] = struct{}{}
	}
	p.dirtyMu.Unlock()
	p.poke()
}

// repairMissing writes again the tunnel keys this proxy published that
// the shared state no longer has (a peer reaped them while this proxy
// looked dead to it).
func (p *peering) repairMissing() {
	p.dirtyMu.Lock()
	ids := make([]string, 0, len(p.published))
	for id := range p.published {
		ids = append(ids, id)
	}
	p.dirtyMu.Unlock()
	var missing []string
	p.mu.RLock()
	if p.synced {
		for _, id := range ids {
			if agent, ok := strings.CutPrefix(id, kubeDirty); ok {
				if _, ok := p.kube[agent][p.cfg.ID]; !ok {
					missing = append(missing, id)
				}
				continue
			}
			if _, ok := p.tunnels[id][p.cfg.ID]; !ok {
				missing = append(missing, id)
			}
		}
	}
	p.mu.RUnlock()
	if len(missing) == 0 {
		return
	}
	p.dirtyMu.Lock()
	for _, id := range missing {
		if _, ok := p.published[id]; ok {
			p.published[id] = ""
			p.dirty[id] = struct{}{}
		}
	}
	p.dirtyMu.Unlock()
	p.poke()
}

// reapDead deletes the tunnel keys of proxies whose records expired or
// vanished (a proxy that died without cleaning up).
func (p *peering) reapDead() {
	now := time.Now()
	var keys []string
	p.mu.RLock()
	if p.synced {
		for nodeID, by := range p.tunnels {
			for proxyID := range by {
				if proxyID == p.cfg.ID {
					continue
				}
				if pr, ok := p.proxies[proxyID]; !ok || !now.Before(pr.expires) {
					keys = append(keys, tunnelKey(nodeID, proxyID))
				}
			}
		}
		for agentID, by := range p.kube {
			for proxyID := range by {
				if proxyID == p.cfg.ID {
					continue
				}
				if pr, ok := p.proxies[proxyID]; !ok || !now.Before(pr.expires) {
					keys = append(keys, kubeKey(agentID, proxyID))
				}
			}
		}
	}
	p.mu.RUnlock()
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		if err := p.cfg.Store.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
			p.s.log.Debug("proxy peering: reap", "key", k, "err", err)
		}
		cancel()
	}
}

// markDirty queues a node's tunnel key for publishing (the registry calls
// it on every change: up, heartbeat, down).
func (p *peering) markDirty(nodeID string) {
	p.dirtyMu.Lock()
	p.dirty[nodeID] = struct{}{}
	p.dirtyMu.Unlock()
	p.poke()
}

func (p *peering) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// publish writes the dirty nodes' tunnel keys from the registry's current
// state: a node connected here is put (unless unchanged), one that is not
// is deleted. Failed writes are retried.
func (p *peering) publish() {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		}
		p.dirtyMu.Lock()
		ids := p.dirty
		p.dirty = map[string]struct{}{}
		p.dirtyMu.Unlock()
		var failed []string
		for id := range ids {
			if err := p.publishOne(id); err != nil {
				if p.ctx.Err() != nil {
					return
				}
				p.s.log.Warn("proxy peering: publishing a tunnel failed", "node_id", id, "err", err)
				failed = append(failed, id)
			}
		}
		if len(failed) == 0 {
			backoff = 100 * time.Millisecond
			continue
		}
		p.dirtyMu.Lock()
		for _, id := range failed {
			p.dirty[id] = struct{}{}
		}
		p.dirtyMu.Unlock()
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(backoff*2, 5*time.Second)
		p.poke()
	}
}

func (p *peering) publishOne(id string) error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	key := p.keyOf(id)
	var v []byte
	if agent, ok := strings.CutPrefix(id, kubeDirty); ok {
		if clusters := p.s.kube.agentClusters(agent); len(clusters) > 0 {
			v, _ = json.Marshal(kubeRecord{Proxy: p.cfg.ID, Agent: agent, Clusters: clusters})
		}
	} else if t := p.s.reg.get(id); t != nil {
		n := t.snapshot()
		n.LastSeen = time.Time{} // heartbeats would rewrite the key each time
		v, _ = json.Marshal(tunnelRecord{Proxy: p.cfg.ID, Node: n})
	}
	if v == nil {
		p.dirtyMu.Lock()
		_, had := p.published[id]
		delete(p.published, id)
		p.dirtyMu.Unlock()
		if !had {
			return nil
		}
		if err := p.cfg.Store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			p.dirtyMu.Lock()
			p.published[id] = ""
			p.dirtyMu.Unlock()
			return err
		}
		return nil
	}
	p.dirtyMu.Lock()
	same := p.published[id] == string(v)
	p.dirtyMu.Unlock()
	if same {
		return nil
	}
	if _, err := p.cfg.Store.Put(ctx, storage.Item{Key: key, Value: v}); err != nil {
		return err
	}
	p.dirtyMu.Lock()
	p.published[id] = string(v)
	p.dirtyMu.Unlock()
	return nil
}

// watch keeps the in-memory picture of proxies and tunnels: watch, list,
// then apply changes in commit order; a watch that ends is started again
// with a fresh list.
func (p *peering) watch() {
	backoff := 100 * time.Millisecond
	for p.ctx.Err() == nil {
		err := p.watchOnce()
		if p.ctx.Err() != nil {
			return
		}
		p.s.log.Warn("proxy peering: watch ended; restarting", "err", err, "in", backoff)
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (p *peering) watchOnce() error {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	ch, err := p.cfg.Store.Watch(ctx, peerPrefix)
	if err != nil {
		return err
	}
	items, err := p.cfg.Store.List(ctx, peerPrefix, 0)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.proxies, p.tunnels, p.revs = map[string]proxyRecord{}, map[string]map[string]tunnelRecord{}, map[string]int64{}
	p.kube = map[string]map[string]kubeRecord{}
	var listed int64
	for _, it := range items {
		p.applyPut(it)
		listed = max(listed, it.Revision)
	}
	p.synced = true
	p.mu.Unlock()
	for ev := range ch {
		if ev.Item.Revision <= listed {
			continue // the list has it
		}
		p.mu.Lock()
		if ev.Type == storage.EventPut {
			p.applyPut(ev.Item)
		} else {
			p.applyDelete(ev.Item.Key)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.synced = false
	p.mu.Unlock()
	return errors.New("watch closed")
}

// applyPut records one item (p.mu held); malformed items are ignored.
func (p *peering) applyPut(it storage.Item) {
	if rev, ok := p.revs[it.Key]; ok && rev >= it.Revision {
		return
	}
	switch {
	case strings.HasPrefix(it.Key, peerProxiesPrefix):
		id := strings.TrimPrefix(it.Key, peerProxiesPrefix)
		var r proxyRecord
		if json.Unmarshal(it.Value, &r) != nil || r.ID != id || validatePeerID(id) != nil {
			return
		}
		if _, _, err := net.SplitHostPort(r.Addr); err != nil {
			return
		}
		r.expires = it.Expires
		if r.expires.IsZero() {
			return // a proxy's record always has a TTL
		}
		p.proxies[id] = r
	case strings.HasPrefix(it.Key, peerTunnelsPrefix):
		nodeID, proxyID, ok := strings.Cut(strings.TrimPrefix(it.Key, peerTunnelsPrefix), "/")
		if !ok {
			return
		}
		var r tunnelRecord
		if json.Unmarshal(it.Value, &r) != nil || r.Proxy != proxyID || r.Node.ID != nodeID {
			return
		}
		r.rev = it.Revision
		by := p.tunnels[nodeID]
		if by == nil {
			by = map[string]tunnelRecord{}
			p.tunnels[nodeID] = by
		}
		by[proxyID] = r
	case strings.HasPrefix(it.Key, peerKubePrefix):
		agentID, proxyID, ok := strings.Cut(strings.TrimPrefix(it.Key, peerKubePrefix), "/")
		if !ok {
			return
		}
		var r kubeRecord
		if json.Unmarshal(it.Value, &r) != nil || r.Proxy != proxyID || r.Agent != agentID {
			return
		}
		kept := r.Clusters[:0]
		for _, c := range r.Clusters {
			if c.AgentID == agentID && kubeClusterName(c.Name) {
				kept = append(kept, c)
			}
		}
		r.Clusters, r.rev = kept, it.Revision
		by := p.kube[agentID]
		if by == nil {
			by = map[string]kubeRecord{}
			p.kube[agentID] = by
		}
		by[proxyID] = r
	default:
		return
	}
	p.revs[it.Key] = it.Revision
}

func (p *peering) applyDelete(key string) {
	delete(p.revs, key)
	switch {
	case strings.HasPrefix(key, peerProxiesPrefix):
		delete(p.proxies, strings.TrimPrefix(key, peerProxiesPrefix))
	case strings.HasPrefix(key, peerTunnelsPrefix):
		nodeID, proxyID, _ := strings.Cut(strings.TrimPrefix(key, peerTunnelsPrefix), "/")
		if by := p.tunnels[nodeID]; by != nil {
			delete(by, proxyID)
			if len(by) == 0 {
				delete(p.tunnels, nodeID)
			}
		}
	case strings.HasPrefix(key, peerKubePrefix):
		agentID, proxyID, _ := strings.Cut(strings.TrimPrefix(key, peerKubePrefix), "/")
		if by := p.kube[agentID]; by != nil {
			delete(by, proxyID)
			if len(by) == 0 {
				delete(p.kube, agentID)
			}
		}
	}
}

// owner is the live peer holding a node's tunnel: among the proxies that
// published it and whose records are current, the latest to publish (a
// node that moved leaves the old key until its old proxy notices).
func (p *peering) owner(nodeID string) (proxyRecord, tunnelRecord, bool) {
	all := p.owners(nodeID)
	if len(all) == 0 {
		return proxyRecord{}, tunnelRecord{}, false
	}
	return all[0].proxy, all[0].tunnel, true
}

type peerOwner struct {
	proxy  proxyRecord
	tunnel tunnelRecord
}

// owners are the live peers holding a node's tunnel, the latest to
// publish first. A peer a dial could not reach since its last heartbeat
// comes last (it may have just died: its record outlives it by up to the
// TTL).
func (p *peering) owners(nodeID string) []peerOwner {
	now := time.Now()
	p.mu.RLock()
	var out []peerOwner
	for proxyID, r := range p.tunnels[nodeID] {
		if proxyID == p.cfg.ID {
			continue
		}
		pr, ok := p.proxies[proxyID]
		if !ok || !now.Before(pr.expires) {
			continue
		}
		out = append(out, peerOwner{pr, r})
	}
	p.mu.RUnlock()
	suspect := func(o peerOwner) bool {
		at, ok := p.unreachable.Load(o.proxy.ID)
		// Since its last heartbeat (the record's expiry less the TTL).
		return ok && at.(time.Time).After(o.proxy.expires.Add(-p.cfg.TTL))
	}
	sort.Slice(out, func(i, j int) bool {
		if si, sj := suspect(out[i]), suspect(out[j]); si != sj {
			return sj
		}
		return out[i].tunnel.rev > out[j].tunnel.rev
	})
	return out
}

// live reports whether id is a live peer (its record current).
func (p *peering) live(id string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	r, ok := p.proxies[id]
	return ok && id != p.cfg.ID && time.Now().Before(r.expires)
}

// markUnreachable notes that a dial could not reach peer id.
func (p *peering) markUnreachable(id string) { p.unreachable.Store(id, time.Now()) }

// kubeOwner is the live peer through which a cluster's agent is
// connected (the latest to publish it), with the cluster.
func (p *peering) kubeOwner(name string) (proxyRecord, auth.KubeCluster, bool) {
	all := p.kubeOwners(name)
	if len(all) == 0 {
		return proxyRecord{}, auth.KubeCluster{}, false
	}
	return all[0].proxy, all[0].cluster, true
}

type peerKubeOwner struct {
	proxy   proxyRecord
	cluster auth.KubeCluster
	rev     int64
}

// kubeOwners are the live peers through which a cluster's agent is
// connected, the latest to publish first. A peer a dial could not reach
// since its last heartbeat comes last, as for node tunnels (owners).
func (p *peering) kubeOwners(name string) []peerKubeOwner {
	now := time.Now()
	p.mu.RLock()
	var out []peerKubeOwner
	for _, by := range p.kube {
		for proxyID, r := range by {
			if proxyID == p.cfg.ID {
				continue
			}
			pr, ok := p.proxies[proxyID]
			if !ok || !now.Before(pr.expires) {
				continue
			}
			for _, c := range r.Clusters {
				if c.Name == name {
					c.Labels = maps.Clone(c.Labels)
					out = append(out, peerKubeOwner{pr, c, r.rev})
					break
				}
			}
		}
	}
	p.mu.RUnlock()
	suspect := func(o peerKubeOwner) bool {
		at, ok := p.unreachable.Load(o.proxy.ID)
		return ok && at.(time.Time).After(o.proxy.expires.Add(-p.cfg.TTL))
	}
	sort.Slice(out, func(i, j int) bool {
		if si, sj := suspect(out[i]), suspect(out[j]); si != sj {
			return sj
		}
		return out[i].rev > out[j].rev
	})
	return out
}

// remoteKube are the clusters served through live peers (and not here).
func (p *peering) remoteKube(local map[string]bool) []auth.KubeCluster {
	p.mu.RLock()
	names := map[string]bool{}
	for _, by := range p.kube {
		for _, r := range by {
			for _, c := range r.Clusters {
				if !local[c.Name] {
					names[c.Name] = true
				}
			}
		}
	}
	p.mu.RUnlock()
	var out []auth.KubeCluster
	for name := range names {
		if _, c, ok := p.kubeOwner(name); ok {
			out = append(out, c)
		}
	}
	return out
}

// remoteNodes are the nodes whose tunnels end at live peers (and not
// here).
func (p *peering) remoteNodes(local map[string]bool) []auth.Node {
	p.mu.RLock()
	ids := make([]string, 0, len(p.tunnels))
	for id := range p.tunnels {
		if !local[id] {
			ids = append(ids, id)
		}
	}
	p.mu.RUnlock()
	out := make([]auth.Node, 0, len(ids))
	for _, id := range ids {
		pr, r, ok := p.owner(id)
		if !ok {
			continue
		}
		n := r.Node // its label map shared, as the registry's (snapshot)
		n.LastSeen = pr.expires.Add(-p.cfg.TTL).UTC()
		out = append(out, n)
	}
	return out
}

// Peers lists the live peer proxies (not this one), by ID.
func (s *Server) Peers() map[string]string {
	out := map[string]string{}
	if s.peers == nil {
		return out
	}
	now := time.Now()
	s.peers.mu.RLock()
	defer s.peers.mu.RUnlock()
	for id, r := range s.peers.proxies {
		if id != s.peers.cfg.ID && now.Before(r.expires) {
			out[id] = r.Addr
		}
	}
	return out
}

// close stops peering and removes this proxy's keys, so that peers stop
// routing to it at once (a proxy that dies instead is forgotten when its
// record expires).
func (p *peering) close() {
	p.cancel()
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p.dirtyMu.Lock()
	ids := make([]string, 0, len(p.published))
	for id := range p.published {
		ids = append(ids, id)
	}
	p.dirtyMu.Unlock()
	_ = p.cfg.Store.Delete(ctx, p.selfKey())
	for _, id := range ids {
		_ = p.cfg.Store.Delete(ctx, p.keyOf(id))
	}
}

// Inventory is the cluster's live node set as this proxy sees it: the
// tunnels it holds, and with peering those its live peers hold.
func (s *Server) Inventory() auth.Inventory { return inventory{s} }

type inventory struct{ s *Server }

func (i inventory) Nodes() []auth.Node {
	local := i.s.reg.Nodes()
	if i.s.peers == nil {
		return local
	}
	ids := make(map[string]bool, len(local))
	for _, n := range local {
		ids[n.ID] = true
	}
	return append(local, i.s.peers.remoteNodes(ids)...)
}

// peerTLSServer is the peer listener's TLS: a client certificate is
// required and must be a proxy's, from the cluster CA.
func (p *peering) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.cfg.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := ca.VerifyProxyPeer(cs.PeerCertificates, p.cfg.Roots(), x509.ExtKeyUsageClientAuth, time.Now())
			return err
		},
	}
}

// clientTLS is the TLS to dial peer id: its certificate must be a proxy's,
// from the cluster CA, for that very ID (peers are named by ID, not host).
func (p *peering) clientTLS(id string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyConnection checks the chain and the ID
		ServerName:         "peer-" + id,
		ClientSessionCache: p.clientSessions,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.cfg.Certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := ca.VerifyProxyPeer(cs.PeerCertificates, p.cfg.Roots(), x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return err
			}
			if got != id {
				return fmt.Errorf("peer at this address is proxy %q, not %q", got, id)
			}
			return nil
		},
	}
}

// KubeInventory is the cluster's live Kubernetes clusters as this proxy
// sees them: those of the agents connected here, and with peering those
// served through live peers.
func (s *Server) KubeInventory() auth.KubeInventory { return kubeInventory{s} }

type kubeInventory struct{ s *Server }

func (i kubeInventory) KubeClusters() []auth.KubeCluster {
	local := i.s.KubeClusters()
	if i.s.peers == nil {
		return local
	}
	names := make(map[string]bool, len(local))
	for _, c := range local {
		names[c.Name] = true
	}
	return append(local, i.s.peers.remoteKube(names)...)
}
