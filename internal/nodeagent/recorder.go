package nodeagent

import (
	"context"

	"github.com/warden-sh/warden/internal/api"
	"github.com/warden-sh/warden/internal/asciicast"
	"github.com/warden-sh/warden/internal/node"
	"github.com/warden-sh/warden/internal/recording"
)

// apiUploader sends spooled recordings to auth over the API.
type apiUploader struct{ c *api.Client }

func (u apiUploader) Upload(ctx context.Context, meta recording.Meta, offset int64, data []byte) error {
	_, err := u.c.AppendRecording(ctx, meta, offset, data)
	return err
}

func (u apiUploader) Complete(ctx context.Context, meta recording.Meta, length int64, sha string, interrupted bool) error {
	return u.c.CompleteRecording(ctx, meta.SessionID, length, sha, interrupted)
}

// startGatedUploader holds back the first bytes of a recording until auth
// has the session's session.start (eventForwarder.waitStart): auth refuses
// recordings of sessions it has no record of, and the node emits
// session.start only after the recording began, through the forwarder
// (which lingers before it sends).
type startGatedUploader struct {
	recording.Uploader
	events *eventForwarder
}

func (u startGatedUploader) Upload(ctx context.Context, meta recording.Meta, offset int64, data []byte) error {
	if offset == 0 {
		if err := u.events.waitStart(ctx, meta.SessionID); err != nil {
			return err
		}
	}
	return u.Uploader.Upload(ctx, meta, offset, data)
}

// spoolRecorder records node sessions into the local spool.
type spoolRecorder struct {
	spool  *recording.Spool
	events *eventForwarder
}

func (r spoolRecorder) Start(_ context.Context, m node.RecordingMeta) (node.SessionRecorder, error) {
	r.events.expectStart(m.SessionID)
	env := map[string]string{}
	if m.Term != "" {
		env["TERM"] = m.Term
	}
	if m.Shell != "" {
		env["SHELL"] = m.Shell
	}
	h := asciicast.Header{Width: max(m.Cols, 1), Height: max(m.Rows, 1), Timestamp: m.Start.Unix(), Env: env,
		Title: m.User + " as " + m.Login + " on " + m.NodeName}
	return r.spool.Start(recording.Meta{SessionID: m.SessionID, User: m.User, Login: m.Login, Node: m.NodeName,
		NodeID: m.NodeID, RemoteAddr: m.RemoteAddr, Start: m.Start}, h, m.RecordInput)
}
