package api

import (
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestParseAuditQuery(t *testing.T) {
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		query   string
		wantErr bool
	}{
		{query: "type=user.login&user=alice&limit=5&after=7&text=boom&since=" + url.QueryEscape(since.Format(time.RFC3339))},
		{query: "limit=-1", wantErr: true},
		{query: "limit=x", wantErr: true},
		{query: "after=x", wantErr: true},
		{query: "since=yesterday", wantErr: true},
		{query: "until=2030-01-02", wantErr: true},
	} {
		r := httptest.NewRequest("GET", "/v1/audit?"+tc.query, nil)
		q, err := parseAuditQuery(r)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err = %v", tc.query, err)
			continue
		}
		if err == nil && tc.query[0] == 't' {
			if q.Type != "user.login" || q.User != "alice" || q.Limit != 5 || q.AfterSeq != 7 || q.Text != "boom" || !q.Since.Equal(since) {
				t.Errorf("parsed %+v", q)
			}
		}
	}
}

func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"type=x&limit=3", "since=2030-01-02T03:04:05Z", "after=-1", "limit=99999999999999999999", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/v1/audit", nil)
		r.URL.RawQuery = raw
		q, err := parseAuditQuery(r)
		if err == nil && (q.Limit < 0) {
			t.Fatalf("accepted a negative limit: %q", raw)
		}
	})
}
