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
