package web

import (
	"net/http"
	"sort"
	"time"

	"github.com/warden-sh/warden/internal/auth"
)

// healthShown caps the nodes the health page lists (of each kind); the
// counts cover all.
const healthShown = 50

// staleAfter is how old a node's last heartbeat may be before the page
// marks it.
const staleAfter = time.Minute

type healthData struct {
	*auth.ClusterHealth
	// Version and Started are this process's (auth and proxy run in it).
	Version string
	Started time.Time
	// Online and Offline are the first healthShown of each.
	Online        []auth.Node
	Offline       []auth.NodeRegistration
	NOnline       int
	NOffline      int
	Stale         int
	Versions      []versionCount
	CAWarnBefore  time.Time
	LatencyMillis string
}

type versionCount struct {
	Version string
	Nodes   int
}

// adminHealth shows the cluster's health (auth.Server.ClusterHealth,
// which authorizes "cluster read").
func (h *Handler) adminHealth(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	v := h.view(s, "Cluster health", "admin", nil)
	ch, err := h.auth.ClusterHealth(r.Context(), c)
	if err != nil {
		v.Error = h.message(err)
		h.render(w, statusOf(err), "admin_health", v)
		return
	}
	d := healthData{ClusterHealth: ch, Version: h.version, Started: h.started, NOnline: len(ch.Online), NOffline: len(ch.Offline),
		CAWarnBefore: ch.Now.Add(30 * 24 * time.Hour), LatencyMillis: ch.Storage.Latency.Round(10 * time.Microsecond).String()}
	for _, n := range ch.Online {
		if ch.Now.Sub(n.LastSeen) > staleAfter {
			d.Stale++
		}
	}
	d.Online = ch.Online[:min(len(ch.Online), healthShown)]
	d.Offline = ch.Offline[:min(len(ch.Offline), healthShown)]
	for ver, n := range ch.Versions {
		d.Versions = append(d.Versions, versionCount{Version: ver, Nodes: n})
	}
	sort.Slice(d.Versions, func(i, j int) bool { return d.Versions[i].Version < d.Versions[j].Version })
	v.Data = d
	h.render(w, http.StatusOK, "admin_health", v)
}
