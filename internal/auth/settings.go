package auth

import (
	"context"
	"errors"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
	"github.com/warden-sh/warden/internal/wire"
)

// Cluster settings in storage (wire.ClusterSettings): `warden cluster
// settings` reads and changes them. Each use reads the current value
// (one storage read), so a change applies at the next sign-in, on every
// auth instance sharing the storage, without a restart; an unset setting
// falls back to the `warden start` configuration.
const keyClusterSettings = "/cluster/settings"

// clusterSettings reads the stored settings (none stored: all unset).
func (s *Server) clusterSettings(ctx context.Context) (wire.ClusterSettings, error) {
	var cs wire.ClusterSettings
	err := s.getJSON(ctx, keyClusterSettings, &cs)
	if errors.Is(err, storage.ErrNotFound) {
		err = nil
	}
	return cs, err
}

// requirePasskey is whether local users must sign in with a passkey, now.
// A storage error fails closed: a passkey is required.
func (s *Server) requirePasskey(ctx context.Context) bool {
	cs, err := s.clusterSettings(ctx)
	if err != nil {
		s.log.Warn("cluster settings unreadable; requiring a passkey", "err", err)
		return true
	}
	if cs.RequirePasskey != nil {
		return *cs.RequirePasskey
	}
	return s.cfg.RequirePasskey
}

// ClusterSettings returns the stored cluster settings and the values in
// effect.
func (s *Server) ClusterSettings(ctx context.Context, c Caller) (*wire.ClusterSettingsView, error) {
	if err := s.authorize(c, "ClusterSettings"); err != nil {
		return nil, err
	}
	cs, err := s.clusterSettings(ctx)
	if err != nil {
		return nil, err
	}
	v := &wire.ClusterSettingsView{Stored: cs}
	v.Effective.RequirePasskey = s.requirePasskey(ctx)
	return v, nil
}

// UpdateClusterSettings changes the settings that in are set (others
// stay), audited as cluster.settings_update.
func (s *Server) UpdateClusterSettings(ctx context.Context, c Caller, in wire.ClusterSettings) (*wire.ClusterSettingsView, error) {
	if err := s.authorize(c, "UpdateClusterSettings"); err != nil {
		return nil, err
	}
	if in.RequirePasskey == nil {
		return nil, badRequest("no setting to change")
	}
	for range 16 {
		var cs wire.ClusterSettings
		rev, err := s.getJSONRev(ctx, keyClusterSettings, &cs)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			cs.RequirePasskey = in.RequirePasskey
			err = s.createJSON(ctx, keyClusterSettings, cs, time.Time{})
			if errors.Is(err, storage.ErrAlreadyExists) {
				continue
			}
		case err != nil:
			return nil, err
		default:
			cs.RequirePasskey = in.RequirePasskey
			err = s.casJSON(ctx, keyClusterSettings, rev, cs, time.Time{})
			if errors.Is(err, storage.ErrCompareFailed) {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		s.emit(ctx, audit.Event{Event: audit.ClusterSettingsUpdate, User: c.User, Success: true,
			Fields: map[string]any{"require_passkey": *in.RequirePasskey}})
		return s.ClusterSettings(ctx, c)
	}
	return nil, errors.New("cluster settings: too many concurrent changes")
}
