package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/wire"
)

// TestSplitJSONArrayMatchesUnmarshal: splitJSONArray gives the elements
// json.Unmarshal gives for a []json.RawMessage, and refuses what it
// refuses.
func TestSplitJSONArrayMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	var nodes []wire.Node
	for i := range 300 {
		b := make([]byte, r.IntN(30))
		for j := range b {
			const set = "[]{},:\"\\ab \n\t"
			b[j] = set[r.IntN(len(set))]
		}
		nodes = append(nodes, wire.Node{ID: string(b), Name: "n" + string(b), Labels: map[string]string{string(b): string(b)}, Since: time.Unix(int64(i), 0)})
	}
	marshalled, _ := json.Marshal(nodes)
	indented, _ := json.MarshalIndent(nodes, " ", "\t")
	docs := []string{string(marshalled), string(indented), "[]", " [ ] \n", "null", "[1]", `[1, "a,b", {"x":[1,{"y":"]"}]}, null, true, -2.5e3, "\\\"]"]`,
		`[[],[[]],{}]`, "[\n  {\"a\": 1},\n  {\"b\": \"}\"}\n]\n"}
	for _, doc := range docs {
		var want []json.RawMessage
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatalf("%.40q: %v", doc, err)
		}
		got, err := splitJSONArray([]byte(doc))
		if err != nil {
			t.Fatalf("%.40q: %v", doc, err)
		}
		if (got == nil) != (want == nil) || len(got) != len(want) {
			t.Fatalf("%.40q: %d elements (nil %v), want %d (nil %v)", doc, len(got), got == nil, len(want), want == nil)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%.40q: element %d = %s, want %s", doc, i, got[i], want[i])
			}
		}
	}
	for _, bad := range []string{"", "[", "[1,]", `{"a":1}`, `"x"`, "[1] 2", `["\x01"]`, "[1}", "1"} {
		var want []json.RawMessage
		if json.Unmarshal([]byte(bad), &want) == nil {
			t.Fatalf("%q: json.Unmarshal accepts it: the test is wrong", bad)
		}
		if got, err := splitJSONArray([]byte(bad)); err == nil {
			t.Errorf("%q: accepted as %q", bad, got)
		}
	}
}

// BenchmarkListNodesJSONDecode compares, in one run, what `warden ls -o
// json` does with 10,000 listed nodes before (json.Unmarshal into
// []json.RawMessage) and now (splitJSONArray).
func BenchmarkListNodesJSONDecode(b *testing.B) {
	nodes := make([]wire.Node, 10000)
	now := time.Now().UTC()
	for i := range nodes {
		nodes[i] = wire.Node{ID: "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a", Name: "node-12345", Hostname: "node-12345.example.com",
			Labels: map[string]string{"shard": "7", "env": "prod"}, Version: "1.2.3", Since: now, LastSeen: now}
	}
	body, err := json.Marshal(nodes)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var out []json.RawMessage
			if err := json.Unmarshal(body, &out); err != nil || len(out) != len(nodes) {
				b.Fatal(err)
			}
		}
	})
	b.Run("splitJSONArray", func(b *testing.B) {
		for b.Loop() {
			if out, err := splitJSONArray(body); err != nil || len(out) != len(nodes) {
				b.Fatal(err)
			}
		}
	})
}

// FuzzSplitJSONArray: for any body, splitJSONArray accepts exactly what
// json.Unmarshal into []json.RawMessage accepts, with the same elements.
func FuzzSplitJSONArray(f *testing.F) {
	for _, s := range []string{"[]", "null", `[1,"a,]",{"b":[{}]}]`, `[{"id":"x\"]"}]`, "[1,]", `{"a":1}`, " [ 1 ] "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want []json.RawMessage
		werr := json.Unmarshal(data, &want)
		got, err := splitJSONArray(data)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: error %v, json.Unmarshal's %v", data, err, werr)
		}
		if err != nil {
			return
		}
		if (got == nil) != (want == nil) || len(got) != len(want) {
			t.Fatalf("%q: %d elements, want %d", data, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: element %d = %s, want %s", data, i, got[i], want[i])
			}
		}
	})
}
