package auditchain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/audit"
)

func TestScanIndexed(t *testing.T) {
	tests := []struct {
		name string
		body string
		want indexed
		ok   bool
	}{
		{"canonical", `{"event":"exec","fields":{"id":"x","user":"y","n":[1,{"}":"]"}],"s":"a\"b"},"id":"e1","node":"n1",` +
			`"session_id":"s1","success":true,"time":"2032-05-06T07:08:09.5Z","user":"alice"}`,
			indexed{Event: "exec", ID: "e1", Node: "n1", SessionID: "s1", User: "alice", Time: time.Date(2032, 5, 6, 7, 8, 9, 5e8, time.UTC)}, true},
		{"escaped user falls back", `{"event":"exec","id":"e","time":"2032-01-01T00:00:00Z","user":"a\"b"}`, indexed{}, false},
		{"empty object", `{}`, indexed{Time: time.Unix(0, 0)}, true},
		{"trailing garbage", `{"id":"a"}x`, indexed{}, false},
		{"truncated", `{"id":"a","fields":{"x":`, indexed{}, false},
		{"not an object", `["id"]`, indexed{}, false},
		{"bad time", `{"time":"yesterday"}`, indexed{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := appendColumnsFast(nil, []byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if want := appendColumns(nil, tc.want); ok && string(got) != string(want) {
				t.Fatalf("appendColumnsFast = %q, want %q", got, want)
			}
		})
	}
}

// FuzzScanIndexed checks the fast scanner against encoding/json on
// canonical bodies, and that it never panics on arbitrary ones.
func FuzzScanIndexed(f *testing.F) {
	f.Add("exec", "alice", "web1", "s1", "k", `{"a":[1,"}",{"b":"]"}]}`)
	f.Add("x", "a\"b", "", "", "user", `"quoted \" }"`)
	f.Add("", "", "é", "\x01", "", `null`)
	f.Fuzz(func(t *testing.T, name, user, node, sess, key, raw string) {
		scanIndexed([]byte(raw)) // must not panic
		var extra any
		if json.Unmarshal([]byte(raw), &extra) != nil {
			extra = raw
		}
		ev := audit.Event{Event: name, ID: "id-" + user, User: user, Node: node, SessionID: sess,
			Time: scanEpoch.Add(time.Duration(len(raw)) * time.Nanosecond), Fields: map[string]any{key: extra}}
		body, err := audit.Canonical(ev)
		if err != nil {
			return
		}
		scanIndexed(body[:len(body)/2]) // must not panic
		got, ok := appendColumnsFast(nil, body)
		var ix indexed
		if err := json.Unmarshal(body, &ix); err != nil {
			t.Fatalf("canonical body does not decode: %v", err)
		}
		want := appendColumns(nil, ix)
		escaped := strings.ContainsAny(name+user+node+sess+ev.ID, "\"\\") || strings.ContainsFunc(name+user+node+sess, func(r rune) bool { return r < 0x20 })
		if !ok {
			if !escaped {
				t.Fatalf("scanIndexed refused a canonical body without escapes: %s", body)
			}
			return
		}
		if string(got) != string(want) {
			t.Fatalf("appendColumnsFast = %q, encoding/json gives %q for %s", got, want, body)
		}
		parts, ok := parseColumns(got)
		if !ok || string(parts[0]) != ix.ID || string(parts[2]) != ix.User || string(parts[4]) != ix.SessionID {
			t.Fatalf("parseColumns(%q) = %q, %v", got, parts, ok)
		}
	})
}

// scanEpoch is when the fuzzed events happen.
var scanEpoch = time.Date(2032, 1, 2, 3, 4, 5, 0, time.UTC)
