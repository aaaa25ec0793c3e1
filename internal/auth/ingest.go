package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/storage"
)

// emittable lists, for each kind of identity, the audit events it may hand
// to auth: those audit.Types says it records. Every other event type is
// auth's own record (logins, locks, certificates, requests...): a node that
// sends user.login or lock.deleted is refused, and the refusal audited.
var emittable = map[string][]string{
	KindNode:  audit.EmittedBy(audit.ByNode),
	KindProxy: audit.EmittedBy(audit.ByProxy),
	// Users and admins send no events: what they do, auth records itself.
	KindUser:  nil,
	KindAdmin: nil,
}

// maxEventBatch bounds one delivery of events.
const maxEventBatch = 1000

// EmitEvents records audit events another service hands to auth: a node's
// (over the API, or in auth's process) or the proxy's. Each kind of caller
// may send only its own event types (emittable); a batch holding any other
// is refused whole, and the refusal audited (audit.event_refused). Auth
// stamps every event it accepts: the time it received it (the sender's time
// is kept as fields.emitter_time, a claim), who sent it (fields.emitter,
// e.g. node:<id>), and for a node its registered name (a node cannot speak
// for another) and fields.node_id.
func (s *Server) EmitEvents(ctx context.Context, c Caller, events []audit.Event) error {
	// Every kind's share is its own event types (emittable), checked below.
	if _, err := s.authorizeShare(c, "EmitEvents"); err != nil {
		return err
	}
	if len(events) > maxEventBatch {
		return badRequest("too many events in one batch (max %d)", maxEventBatch)
	}
	for _, ev := range events {
		if len(ev.Event) == 0 || len(ev.Event) > 64 {
			return badRequest("invalid event name")
		}
		if b, err := json.Marshal(ev.Fields); err != nil || len(b) > 64<<10 {
			return badRequest("event fields too large")
		}
	}
	nodeName := ""
	if c.Kind == KindNode {
		reg, err := s.GetNodeRegistration(ctx, c.NodeID)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("%w: node %s is no longer registered", ErrUnauthenticated, c.NodeID)
			}
			return err
		}
		nodeName = reg.Name
	}
	emitter := emitterName(c)
	if refused := notEmittable(c.Kind, events); len(refused) > 0 {
		return s.refuseEvents(ctx, c, emitter, nodeName, events, refused)
	}
	now := s.now().UTC()
	out := make([]audit.Event, 0, len(events))
	for _, ev := range events {
		if ev.Fields == nil {
			ev.Fields = map[string]any{}
		} else {
			ev.Fields = maps.Clone(ev.Fields)
		}
		delete(ev.Fields, "emitter_time")
		if !ev.Time.IsZero() {
			ev.Fields["emitter_time"] = ev.Time.UTC().Format(time.RFC3339Nano)
		}
		ev.Time = now
		ev.Fields["emitter"] = emitter
		ev.Code = "" // codes are auth's (audit.CodeLoginSuccess: a login)
		ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
		if c.Kind == KindNode {
			ev.Node = nodeName
			ev.Fields["node_id"] = c.NodeID
		}
		out = append(out, ev)
	}
	// One transaction for the batch: a node's events land together.
	if err := audit.EmitAll(ctx, s.cfg.Audit, out); err != nil {
		return err
	}
	if c.Kind == KindNode {
		for _, ev := range out {
			s.trackSession(ctx, c.NodeID, ev)
		}
	}
	return nil
}

// emitterName is how an event's sender is recorded in fields.emitter.
func emitterName(c Caller) string {
	switch c.Kind {
	case KindNode:
		return "node:" + c.NodeID
	case KindProxy:
		return KindProxy
	}
	return c.Kind + ":" + c.User
}

// notEmittable returns the distinct event types in events that kind may
// not send, in order.
func notEmittable(kind string, events []audit.Event) []string {
	var refused []string
	for _, ev := range events {
		if !slices.Contains(emittable[kind], ev.Event) && !slices.Contains(refused, ev.Event) {
			refused = append(refused, ev.Event)
		}
	}
	return refused
}

// refuseEvents audits a refused batch and returns the caller's error. A
// sender retrying the same batch (a node's journal does) is recorded once:
// the refusal's id is derived from the batch's event ids.
func (s *Server) refuseEvents(ctx context.Context, c Caller, emitter, nodeName string, events []audit.Event, refused []string) error {
	shown := refused
	if len(shown) > 3 {
		shown = shown[:3]
	}
	quoted := make([]string, len(shown))
	for i, t := range shown {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	msg := fmt.Sprintf("a %s may not emit %s events", c.Kind, strings.Join(quoted, ", "))
	if len(refused) > len(shown) {
		msg += fmt.Sprintf(" (and %d more types)", len(refused)-len(shown))
	}
	ev := audit.Event{Event: audit.EventRefused, Node: nodeName, Success: false, Error: msg,
		Fields: map[string]any{"emitter": emitter, "refused_events": refused, "batch_size": len(events)}}
	if c.Kind == KindUser || c.Kind == KindAdmin {
		ev.User = c.User
	}
	h := sha256.New()
	h.Write([]byte(emitter))
	for _, e := range events {
		if e.ID == "" {
			h = nil // nothing identifies the batch: record this refusal on its own
			break
		}
		h.Write([]byte{0})
		h.Write([]byte(e.ID))
	}
	if h != nil {
		ev.ID = "refused-" + hex.EncodeToString(h.Sum(nil))[:32]
	}
	s.emit(ctx, ev)
	return denied("%s", msg)
}

// Emitter returns an audit.Emitter for a service in auth's own process (the
// proxy: ProxyCaller) whose events pass the same checks and stamps as a
// node's (EmitEvents).
func (s *Server) Emitter(c Caller) audit.Emitter { return callerEmitter{s: s, c: c} }

type callerEmitter struct {
	s *Server
	c Caller
}

func (e callerEmitter) Emit(ctx context.Context, ev audit.Event) error {
	return e.s.EmitEvents(ctx, e.c, []audit.Event{ev})
}

func (e callerEmitter) EmitBatch(ctx context.Context, evs []audit.Event) error {
	return e.s.EmitEvents(ctx, e.c, evs)
}
