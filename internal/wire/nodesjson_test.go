package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendNodesJSONMatchesMarshal: the hand-written encoding of nodes is
// byte for byte encoding/json's, for ordinary and hostile strings, labels,
// zones and flags.
func TestAppendNodesJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	odd := []string{"", "plain", `quote " back \ slash`, "<script>&amp;</script>", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"ünïcødé ✓ 😀", "line\u2028sep\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate", "tab\tand/slash"}
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		if r.IntN(3) == 0 {
			return odd[r.IntN(len(odd))]
		}
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", -7*3600-30*60), time.FixedZone("y", 14*3600)}
	var nodes []Node
	for i := range 2000 {
		n := Node{ID: str(), Name: str(), Hostname: str(), Version: str(), Addr: str(), Agentless: i%3 == 0,
			Since:    time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(zones[r.IntN(len(zones))]),
			LastSeen: time.Unix(r.Int64N(1<<34), int64(r.IntN(3))*1e8).In(zones[r.IntN(len(zones))])}
		if i%7 == 0 {
			n.Since = time.Time{}
		}
		switch i % 4 {
		case 0:
		case 1:
			n.Labels = map[string]string{}
		default:
			n.Labels = map[string]string{}
			for range r.IntN(6) + 1 {
				n.Labels[str()] = str()
			}
		}
		nodes = append(nodes, n)
	}
	for _, list := range [][]Node{nil, {}, nodes[:1], nodes} {
		want, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		if list == nil {
			want = []byte("[]") // the API lists none as [], not null
		}
		got, ok := AppendNodesJSON([]byte("prefix"), list)
		if !ok {
			t.Fatal("AppendNodesJSON refused ordinary nodes")
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			for i := range list {
				w, _ := json.Marshal(list[i])
				g, _, _ := list[i].appendJSON(nil, nil)
				if !bytes.Equal(g, w) {
					t.Fatalf("node %d:\n got %s\nwant %s", i, g, w)
				}
			}
			t.Fatalf("list of %d differs", len(list))
		}
	}
}

// TestAppendNodesJSONRefusesWhatMarshalRefuses: a time encoding/json
// cannot encode leaves dst as it was and says so.
func TestAppendNodesJSONRefusesWhatMarshalRefuses(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		list := []Node{{ID: "a", Since: time.Now()}, {ID: "b", LastSeen: tm}}
		if _, err := json.Marshal(list); err == nil {
			t.Fatalf("%s: encoding/json encodes it: the test is wrong", tm)
		}
		got, ok := AppendNodesJSON([]byte("x"), list)
		if ok || string(got) != "x" {
			t.Errorf("%s: AppendNodesJSON = %q, %v; want it refused", tm, got, ok)
		}
	}
}

func BenchmarkNodesJSON(b *testing.B) {
	nodes := make([]Node, 10000)
	now := time.Now().UTC()
	for i := range nodes {
		nodes[i] = Node{ID: "5d2d8f7a-0c3e-4f7b-9a63-9d8f1e2c3b4a", Name: "node-12345", Hostname: "node-12345.example.com",
			Labels: map[string]string{"shard": "7", "env": "prod"}, Version: "1.2.3", Since: now, LastSeen: now}
	}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var buf bytes.Buffer
			if err := json.NewEncoder(&buf).Encode(nodes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendNodesJSON", func(b *testing.B) {
		for b.Loop() {
			if _, ok := AppendNodesJSON(nil, nodes); !ok {
				b.Fatal("refused")
			}
		}
	})
}
