package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-sh/warden/internal/audit"
)

// ClusterHealth is what the admin's cluster health page shows: the auth
// service and its storage, the nodes (connected or only registered), the
// certificate authorities and the audit log's chain. It is read-only and
// holds no secret (fingerprints and public facts only).
type ClusterHealth struct {
	ClusterName string
	// PublicAddr is the proxy address users reach.
	PublicAddr string
	Now        time.Time
	// Online are the nodes with a tunnel up, stalest heartbeat first;
	// Offline the joined nodes without one (registrations, no heartbeat).
	Online  []Node
	Offline []NodeRegistration
	// Versions counts the online nodes per reported version.
	Versions map[string]int
	CAs      []CAHealth
	Storage  StorageHealth
	Audit    AuditHealth
}

// CAHealth describes one certificate authority.
type CAHealth struct {
	Name string
	// Fingerprint is SHA256:… for an SSH CA, sha256:hex of the
	// certificate for the TLS CA.
	Fingerprint string
	// NotAfter is when the CA's own certificate expires (zero: an SSH CA
	// is a bare key, which does not expire; the certificates it signs do).
	NotAfter time.Time
}

// StorageHealth is the result of a read of the state store.
type StorageHealth struct {
	OK      bool
	Error   string
	Latency time.Duration
	Roles   int
	Users   int
}

// AuditHealth is where the audit log's chain stands, without walking it
// (a whole check is VerifyAudit).
type AuditHealth struct {
	OK     bool
	Error  string
	Last   audit.ChainPos
	LastAt time.Time
	// Signing says whether auth signs checkpoints, with which key.
	Signing bool
	KeyID   string
	// Checkpoint is the last signed checkpoint; CheckpointOK whether it is
	// intact and verifies with auth's key (CheckpointError says why not).
	Checkpoint      audit.ChainPos
	CheckpointAt    time.Time
	CheckpointOK    bool
	CheckpointError string
}

// ClusterHealth reports the state of the cluster (the admin's cluster
// health page).
func (s *Server) ClusterHealth(ctx context.Context, c Caller) (*ClusterHealth, error) {
	if err := s.authorize(c, "ClusterHealth"); err != nil {
		return nil, err
	}
	h := &ClusterHealth{ClusterName: s.ca.ClusterName(), PublicAddr: s.cfg.PublicAddr, Now: s.now().UTC(), Versions: map[string]int{}}

	live := s.liveNodes()
	seen := make(map[string]bool, len(live))
	for _, n := range live {
		seen[n.ID] = true
		v := n.Version
		if v == "" {
			v = "unknown"
		}
		h.Versions[v]++
	}
	h.Online = append(h.Online, live...)
	sort.Slice(h.Online, func(i, j int) bool { return h.Online[i].LastSeen.Before(h.Online[j].LastSeen) })

	start := time.Now()
	regs, err := s.b.List(ctx, prefixNodeReg, 0)
	if err == nil {
		for _, it := range regs {
			var reg NodeRegistration
			// Proxies are not nodes: they are never offline nodes.
			if json.Unmarshal(it.Value, &reg) == nil && !seen[reg.ID] && reg.Kind != RegistrationProxy {
				h.Offline = append(h.Offline, reg)
			}
		}
		var n []int
		for _, p := range []string{prefixRoles, prefixUsers} {
			items, lerr := s.b.List(ctx, p, 0)
			if lerr != nil {
				err = lerr
				break
			}
			n = append(n, len(items))
		}
		if err == nil {
			h.Storage.Roles, h.Storage.Users = n[0], n[1]
		}
	}
	h.Storage.Latency = time.Since(start)
	h.Storage.OK = err == nil
	if err != nil {
		s.log.Error("cluster health: storage", "err", err)
		h.Storage.Error = "the state store does not answer (see the auth service log)"
	}
	sort.Slice(h.Offline, func(i, j int) bool { return h.Offline[i].Name < h.Offline[j].Name })

	h.CAs = []CAHealth{
		{Name: "user SSH CA", Fingerprint: ssh.FingerprintSHA256(s.ca.UserCAPublicKey())},
		{Name: "host SSH CA", Fingerprint: ssh.FingerprintSHA256(s.ca.HostCAPublicKey())},
	}
	if cert := s.ca.TLSCACert(); cert != nil {
		sum := sha256.Sum256(cert.Raw)
		h.CAs = append(h.CAs, CAHealth{Name: "TLS CA", Fingerprint: "sha256:" + hex.EncodeToString(sum[:]), NotAfter: cert.NotAfter.UTC()})
	}
	h.Audit = s.auditHealth(ctx)
	return h, nil
}

func (s *Server) auditHealth(ctx context.Context) AuditHealth {
	var a AuditHealth
	evs, err := s.cfg.Audit.Search(ctx, audit.Query{Newest: true, Limit: 1})
	if err != nil {
		s.log.Error("cluster health: audit log", "err", err)
		a.Error = "the audit log does not answer (see the auth service log)"
		return a
	}
	a.OK = true
	if len(evs) > 0 {
		a.Last, a.LastAt = audit.ChainPos{Seq: evs[0].Seq, Hash: evs[0].Hash}, evs[0].Time
	}
	pub, id := s.AuditPublicKey()
	a.Signing, a.KeyID = pub != nil, id
	st, ok := s.cfg.Audit.(checkpointStore)
	if !ok {
		return a
	}
	ev, found, err := st.LastCheckpoint(ctx)
	switch {
	case err != nil:
		a.CheckpointError = "cannot read the last checkpoint (see the auth service log)"
		s.log.Error("cluster health: last audit checkpoint", "err", err)
		return a
	case !found:
		return a
	}
	a.Checkpoint, a.CheckpointAt = audit.ChainPos{Seq: ev.Seq, Hash: ev.Hash}, ev.Time
	prev, _ := hex.DecodeString(ev.PrevHash)
	hash, herr := audit.HashEvent(ev.PrevHash, ev)
	var keys []ed25519.PublicKey
	if pub != nil {
		keys = append(keys, pub)
	}
	_, cerr := audit.CheckCheckpoint(ev, ev.Seq-1, prev, keys)
	switch {
	case herr != nil || hash != ev.Hash:
		a.CheckpointError = "the last checkpoint was altered: run warden audit verify"
	case cerr != nil:
		a.CheckpointError = cerr.Error()
	default:
		a.CheckpointOK = true
	}
	return a
}
