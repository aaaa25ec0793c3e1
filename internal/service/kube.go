package service

import (
	"context"
	"path/filepath"
	"time"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/kubeagent"
	"github.com/warden-sh/warden/internal/wire"
)

// startKube starts the kube agent. With auth in the same process it joins
// with a token of its own, as the local node does.
func (p *Process) startKube(ctx context.Context) error {
	kcfg := p.cfg.Kube
	if kcfg.Name == "" {
		kcfg.Name = p.cfg.Node.Name
	}
	if p.auth != nil && p.cfg.Has(Proxy) && kcfg.ProxyAddr == "" {
		kcfg.ProxyAddr = p.ProxyAddr()
		if kcfg.Token == "" && kcfg.TokenFile == "" {
			tok, err := p.auth.CreateToken(ctx, auth.AdminCaller(), auth.CreateTokenRequest{Type: wire.TokenTypeKube, TTL: 5 * time.Minute})
			if err != nil {
				return err
			}
			kcfg.Token, kcfg.CAPin = tok.Token, api.Fingerprint(p.auth.Authority().TLSCACert().Raw)
		}
	}
	agent, err := kubeagent.Start(ctx, kubeagent.Config{Settings: kcfg, DataDir: filepath.Join(p.cfg.DataDir, "kube"),
		Logger: p.log.With("service", "kube")})
	if err != nil {
		return err
	}
	p.kube = agent
	return nil
}

// Kube returns the kube agent (nil if not running).
func (p *Process) Kube() *kubeagent.Agent { return p.kube }
