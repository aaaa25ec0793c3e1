package service

import (
	"context"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/nodeagent"
	"github.com/warden-sh/warden/internal/recording"
)

// localNodeAuth is auth in the same process as the node (all-in-one): the
// node's recordings and audit events go to it directly, not over TLS to
// itself. Calls carry the node's identity and pass the same checks as the
// API's, except that auth takes the recording hash the node computed
// rather than compute it again (auth.Server.AppendLocalRecording).
type localNodeAuth struct {
	a      *auth.Server
	caller auth.Caller
}

// localNode is nodeagent.Config.LocalServer for auth a.
func localNode(a *auth.Server) func(nodeID string) nodeagent.LocalServer {
	return func(nodeID string) nodeagent.LocalServer {
		return localNodeAuth{a: a, caller: auth.Caller{Kind: auth.KindNode, NodeID: nodeID}}
	}
}

func (l localNodeAuth) Upload(ctx context.Context, meta recording.Meta, offset int64, data []byte) error {
	if err := l.a.CheckCaller(l.caller); err != nil {
		return err
	}
	_, err := l.a.AppendLocalRecording(ctx, l.caller, meta, offset, data)
	return err
}

func (l localNodeAuth) Complete(ctx context.Context, meta recording.Meta, length int64, sha string, interrupted bool) error {
	if err := l.a.CheckCaller(l.caller); err != nil {
		return err
	}
	return l.a.CompleteRecording(ctx, l.caller, meta.SessionID, length, sha, interrupted)
}

func (l localNodeAuth) EmitEvents(ctx context.Context, evs []audit.Event) error {
	if err := l.a.CheckCaller(l.caller); err != nil {
		return err
	}
	return l.a.EmitEvents(ctx, l.caller, evs)
}
