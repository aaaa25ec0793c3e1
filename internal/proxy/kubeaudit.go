package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
)

// Auditing Kubernetes requests. Every request is a kube.request event;
// at a thousand requests a second storing each on its own (a transaction,
// an fsync) would cost more than the request. So kubeAudit only queues
// the event, and one writer (runKubeAudit) stores what is queued in one
// batch (one transaction). No event is dropped:
//
//   - a batch that fails is retried, with a growing pause, until it is
//     stored (at least once: a failure after the commit stores it twice);
//     a batch auth refuses as invalid is split so one bad event holds back
//     no other, and an event refused on its own is logged;
//   - while the writer cannot keep up (storage slow or down), the queue
//     fills and then the requests wait for room (backpressure), rather
//     than dropping events or storing them one by one on the request's
//     path;
//   - at shutdown the writer stores what is queued (retrying for at most
//     kubeAuditDrain), and requests still finishing store their own.

const (
	// kubeAuditQueue is how many events may wait for the writer.
	kubeAuditQueue = 4096
	// kubeAuditBatch is the most events stored in one batch (auth's
	// EmitEvents takes up to 1000).
	kubeAuditBatch = 512
	// kubeAuditRetryMax is the longest pause between two attempts.
	kubeAuditRetryMax = 5 * time.Second
	// kubeAuditDrain bounds the retries at shutdown.
	kubeAuditDrain = 10 * time.Second
	// kubeAuditLinger is how long the writer waits, after the first event
	// of a batch, for more: one commit (an fsync) for many requests rather
	// than one for each of a steady trickle. At 20 ms, with a thousand
	// requests a second on a loaded machine, the commits were half of the
	// writer's CPU (profiled: docs/kubernetes.md, Performance).
	kubeAuditLinger = 100 * time.Millisecond
)

// kubeAudit queues a kube.request event, waiting for room when the queue
// is full.
func (s *Server) kubeAudit(ev audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	select {
	case s.kube.events <- ev:
		return
	default:
	}
	select {
	case s.kube.events <- ev:
	case <-s.shutdown:
		// The writer is draining or gone: store it here.
		stop := make(chan struct{})
		t := time.AfterFunc(kubeAuditDrain, func() { close(stop) })
		defer t.Stop()
		_ = s.emitKubeBatch([]audit.Event{ev}, stop)
	}
}

func (s *Server) runKubeAudit() {
	batch := make([]audit.Event, 0, kubeAuditBatch)
	// Take what is queued, up to a batch.
	take := func() {
		for len(batch) < cap(batch) {
			select {
			case ev := <-s.kube.events:
				batch = append(batch, ev)
			default:
				return
			}
		}
	}
	linger := time.NewTimer(kubeAuditLinger)
	linger.Stop()
	// fill waits up to kubeAuditLinger for the batch to fill.
	fill := func() {
		linger.Reset(kubeAuditLinger)
		defer linger.Stop()
		for len(batch) < cap(batch) {
			select {
			case ev := <-s.kube.events:
				batch = append(batch, ev)
			case <-linger.C:
				return
			case <-s.shutdown:
				return
			}
		}
	}
	for {
		select {
		case ev := <-s.kube.events:
			batch = append(batch, ev)
			fill()
			if s.emitKubeBatch(batch, s.shutdown) == nil {
				batch = batch[:0]
				continue
			}
		case <-s.shutdown:
		}
		// Shutdown: store what is queued, and what a failed attempt above
		// left (it returned when shutdown began).
		stop := make(chan struct{})
		t := time.AfterFunc(kubeAuditDrain, func() { close(stop) })
		defer t.Stop()
		for {
			take()
			if len(batch) == 0 {
				return
			}
			if err := s.emitKubeBatch(batch, stop); err != nil {
				s.log.Error("kube audit: events not stored at shutdown", "events", len(batch)+len(s.kube.events), "err", err)
				return
			}
			batch = batch[:0]
		}
	}
}

// emitKubeBatch stores batch, retrying until it is stored, refused as
// invalid, or stop is closed (then the batch is kept by the caller: the
// error is returned and batch is unchanged).
func (s *Server) emitKubeBatch(batch []audit.Event, stop <-chan struct{}) error {
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := audit.EmitAll(context.Background(), s.cfg.Audit, batch)
		if err == nil {
			return nil
		}
		if errors.Is(err, auth.ErrBadRequest) {
			if len(batch) == 1 {
				s.log.Error("kube audit: event refused", "event", batch[0].Event, "user", batch[0].User, "fields", batch[0].Fields, "err", err)
				return nil
			}
			for _, ev := range batch {
				if err := s.emitKubeBatch([]audit.Event{ev}, stop); err != nil {
					return err
				}
			}
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("kube audit: storing events failed, retrying", "events", len(batch), "attempt", attempt, "err", err)
		}
		select {
		case <-stop:
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, kubeAuditRetryMax)
	}
}
