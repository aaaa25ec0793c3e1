package notify

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type job struct {
	m  Message
	id string // same for every attempt, so receivers can de-duplicate
}

// worker delivers one target's messages in order, one at a time.
type worker struct {
	n *Notifier
	t Target
	q chan job
}

func (w *worker) run() {
	for j := range w.q {
		w.deliver(j)
	}
}

// StatusError is a webhook's non-2xx response.
type StatusError struct {
	Code int
	// Body is the start of the response body (Slack explains errors there).
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("webhook answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// retryable reports whether a status is worth retrying.
func retryable(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}

func (w *worker) deliver(j job) {
	n := w.n
	body, err := encode(w.t.Format, j.m)
	if err != nil {
		n.log.Error("notification not encodable", "dest", w.t.Redacted(), "event", j.m.Event, "err", err)
		n.result(w.t, j.m, 0, err)
		return
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		if n.abort.Err() != nil {
			n.result(w.t, j.m, attempt-1, closedErr(lastErr))
			return
		}
		retry, wait, err := w.post(body, j.id)
		if err == nil {
			n.log.Debug("notification delivered", "dest", w.t.Redacted(), "event", j.m.Event, "attempts", attempt)
			n.result(w.t, j.m, attempt, nil)
			return
		}
		lastErr = err
		if !retry || attempt >= n.cfg.MaxAttempts {
			n.log.Warn("notification failed", "dest", w.t.Redacted(), "event", j.m.Event, "attempts", attempt, "err", err)
			n.result(w.t, j.m, attempt, err)
			return
		}
		wait = max(wait, backoff(n.cfg.InitialBackoff, n.cfg.MaxBackoff, attempt))
		n.log.Debug("notification retry", "dest", w.t.Redacted(), "event", j.m.Event, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.abort.Done():
			t.Stop()
			n.result(w.t, j.m, attempt, closedErr(err))
			return
		}
	}
}

func closedErr(last error) error {
	if last == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w (last error: %w)", ErrClosed, last)
}

// post makes one attempt. retry says whether a failure is transient; wait is
// a server-requested delay (Retry-After), capped by MaxBackoff.
func (w *worker) post(body []byte, id string) (retry bool, wait time.Duration, err error) {
	n := w.n
	ctx, cancel := context.WithTimeout(n.abort, n.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.t.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, errors.New("cannot build request for the webhook url")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("X-Warden-Delivery", id)
	resp, err := n.client.Do(req)
	if err != nil {
		return true, 0, stripURL(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, 0, nil
	}
	serr := &StatusError{Code: resp.StatusCode, Body: cleanSnippet(snippet)}
	if !retryable(resp.StatusCode) {
		return false, 0, serr
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		wait = min(time.Duration(s)*time.Second, n.cfg.MaxBackoff)
	}
	return true, wait, serr
}

func cleanSnippet(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// backoff returns the wait before retry number attempt (1-based): initial
// doubled per attempt up to maxWait, with "equal jitter" (a random point in
// the upper half) so that many notifiers do not retry in lockstep.
func backoff(initial, maxWait time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + rand.N(d-half+1)
}

func deliveryID() (string, error) {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
