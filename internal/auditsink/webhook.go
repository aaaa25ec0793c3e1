package auditsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

// webhookDest POSTs batches as JSON arrays.
type webhookDest struct {
	url    string
	header http.Header
	client *http.Client
}

func (*webhookDest) name() string { return "webhook" }

// statusError is a non-2xx answer.
type statusError struct {
	code       int
	retryAfter time.Duration
	body       string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("webhook answered %d %s", e.code, http.StatusText(e.code))
	}
	return fmt.Sprintf("webhook answered %d %s: %s", e.code, http.StatusText(e.code), e.body)
}

func (w *webhookDest) deliver(ctx context.Context, evs []audit.Event) error {
	body, err := json.Marshal(evs)
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	for k, vs := range w.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	// Lets a receiver drop a batch it already has after a sink restart.
	req.Header.Set("Idempotency-Key", fmt.Sprintf("warden-audit-%d-%d", evs[0].Seq, evs[len(evs)-1].Seq))
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drain to reuse the connection
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(msg))}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		se.retryAfter = time.Duration(s) * time.Second
	}
	return se
}
