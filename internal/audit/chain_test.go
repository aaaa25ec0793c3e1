package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var epoch = time.Date(2032, 5, 6, 7, 8, 9, 123000000, time.UTC)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "minimal",
			ev:   Event{Event: Exec, Time: epoch, ID: "e1"},
			want: `{"event":"exec","id":"e1","success":false,"time":"2032-05-06T07:08:09.123Z"}`,
		},
		{
			name: "seq and hashes are not covered",
			ev:   Event{Event: Exec, Time: epoch, ID: "e1", Seq: 42, PrevHash: "aa", Hash: "bb"},
			want: `{"event":"exec","id":"e1","success":false,"time":"2032-05-06T07:08:09.123Z"}`,
		},
		{
			name: "keys sorted at every level",
			ev: Event{Event: UserLogin, Time: epoch, ID: "e2", User: "alice", Success: true, Code: "L001I",
				Fields: map[string]any{"zeta": 1, "alpha": map[string]any{"y": true, "b": nil}, "mid": []any{"x", 2.5}}},
			want: `{"code":"L001I","event":"user.login","fields":{"alpha":{"b":null,"y":true},"mid":["x",2.5],"zeta":1},` +
				`"id":"e2","success":true,"time":"2032-05-06T07:08:09.123Z","user":"alice"}`,
		},
		{
			name: "strings escaped minimally",
			ev: Event{Event: Exec, Time: epoch, ID: "e3",
				Fields: map[string]any{"command": "echo \"<a&b>\" \\ \t\n\r\b\f\x01\x7f é \u2028 😀"}},
			want: `{"event":"exec","fields":{"command":"echo \"<a&b>\" \\ \t\n\r\b\f\u0001` + "\x7f é \u2028 😀" +
				`"},"id":"e3","success":false,"time":"2032-05-06T07:08:09.123Z"}`,
		},
		{
			name: "keys in UTF-8 byte order",
			ev:   Event{Event: Exec, Time: epoch, ID: "e4", Fields: map[string]any{"é": 1, "z": 2, "Z": 3, "": 4}},
			want: `{"event":"exec","fields":{"":4,"Z":3,"z":2,"é":1},"id":"e4","success":false,"time":"2032-05-06T07:08:09.123Z"}`,
		},
		{
			name: "large integers and floats keep encoding/json's text",
			ev: Event{Event: Exec, Time: epoch, ID: "e5",
				Fields: map[string]any{"big": int64(1<<62 + 1), "neg": -7, "f": 1e21, "small": 1e-7}},
			want: `{"event":"exec","fields":{"big":4611686018427387905,"f":1e+21,"neg":-7,"small":1e-7},` +
				`"id":"e5","success":false,"time":"2032-05-06T07:08:09.123Z"}`,
		},
		{
			name: "time normalised by encoding/json, not by Canonical",
			ev:   Event{Event: Exec, Time: time.Date(2032, 1, 1, 1, 0, 0, 0, time.FixedZone("X", 3600)), ID: "e6"},
			want: `{"event":"exec","id":"e6","success":false,"time":"2032-01-01T01:00:00+01:00"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonical(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Canonical =\n%s\nwant\n%s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("Canonical produced invalid JSON: %s", got)
			}
		})
	}
}

func TestCanonicalIsDeterministic(t *testing.T) {
	fields := map[string]any{}
	for i := range 64 {
		fields[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('0'+i%10))] = map[string]any{"n": i, "s": "v"}
	}
	ev := Event{Event: Exec, Time: epoch, ID: "det", Fields: fields}
	first, err := Canonical(ev)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // map iteration order is randomised on every range
		again, err := Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("Canonical differs between calls:\n%s\n%s", first, again)
		}
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	ev := Event{Event: CertIssued, Code: "C001", Time: epoch, ID: "rt", User: "dev", Login: "root", Node: "web1",
		SessionID: "s1", RemoteAddr: "10.0.0.1:2222", Success: true, Error: "",
		Fields: map[string]any{"serial": "18446744073709551615", "principals": []string{"dev", "root"}, "ttl": 3600,
			"expires": epoch.Add(time.Hour), "nested": map[string]any{"x": []any{1.5, nil, false}}}}
	c1, err := Canonical(ev)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Event
	if err := json.Unmarshal(c1, &decoded); err != nil {
		t.Fatal(err)
	}
	c2, err := Canonical(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1, c2) {
		t.Fatalf("decoded event re-encodes differently:\n%s\n%s", c1, c2)
	}
}

func TestCanonicalRefusesUnencodable(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), make(chan int), func() {}} {
		if _, err := Canonical(Event{Event: Exec, Fields: map[string]any{"v": v}}); err == nil {
			t.Errorf("Canonical accepted a field of %T", v)
		}
	}
}

func TestCanonicalFastMatchesSlow(t *testing.T) {
	// The fast path writes Event's fields by hand: a new field must be
	// added there (and here) or it would silently escape the hash.
	var tags []string
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		tags = append(tags, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
	}
	want := []string{"event", "code", "time", "id", "seq", "user", "login", "node", "session_id", "remote_addr",
		"success", "error", "fields", "prev_hash", "hash"}
	if !slices.Equal(tags, want) {
		t.Fatalf("Event's JSON fields are %v; update canonicalFast and this list (%v)", tags, want)
	}
	full := Event{Event: "e", Code: "c", Time: epoch, ID: "i", Seq: 9, User: "u", Login: "l", Node: "n", SessionID: "s",
		RemoteAddr: "r", Success: true, Error: "x", Fields: map[string]any{"k": []int{1}}, PrevHash: "p", Hash: "h"}
	evs := []Event{
		{},
		full,
		{Event: "only"},
		{Event: "esc\"<&>\u2028\x00", User: "é", Fields: map[string]any{}},
		{Event: "zone", Time: time.Date(2032, 1, 1, 0, 0, 0, 1, time.FixedZone("", -5*3600))},
		{Event: "bad utf8 \xff", User: "\xfe"},                                  // declined: slow path
		{Event: "bad year", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, // both fail
		{Event: "flat", Fields: map[string]any{"s": "v\n\"", "b": false, "i": -1, "i64": int64(math.MinInt64),
			"i32": int32(7), "u": uint(3), "u64": uint64(math.MaxUint64), "u32": uint32(9), "k\"\\\x01é": true}},
		{Event: "flat lists", Fields: map[string]any{"groups": []string{"system:masters", "q\"é\u2028<"}, "none": []string(nil),
			"empty": []string{}, "s": "v"}},
		{Event: "flat bad utf8 list", Fields: map[string]any{"l": []string{"ok", "\xff"}}},
		{Event: "flat bad utf8 value", Fields: map[string]any{"s": "\xff"}},
		{Event: "flat bad utf8 key", Fields: map[string]any{"\xff": 1}},
		{Event: "mixed", Fields: map[string]any{"s": "v", "f": 1.5}},
		{Event: "nested", Fields: map[string]any{"m": map[string]string{"b": "1", "a": "2"}, "l": []string{"x"}, "n": nil}},
	}
	for _, ev := range evs {
		slow, slowErr := canonicalSlow(ev)
		got, err := Canonical(ev)
		if (err != nil) != (slowErr != nil) || !bytes.Equal(got, slow) {
			t.Errorf("Canonical(%+v) = %s, %v; definition gives %s, %v", ev, got, err, slow, slowErr)
		}
		if fast, ok := canonicalFast(ev); ok && !bytes.Equal(fast, slow) {
			t.Errorf("canonicalFast(%+v) = %s, want %s", ev, fast, slow)
		}
	}
}

func TestChainHash(t *testing.T) {
	c := []byte(`{"event":"exec"}`)
	want := sha256.Sum256(c)
	if got := ChainHash(nil, c); !bytes.Equal(got, want[:]) {
		t.Errorf("ChainHash(nil, c) = %x, want sha256(c) %x", got, want)
	}
	prev := want[:]
	want2 := sha256.Sum256(append(append([]byte{}, prev...), c...))
	if got := ChainHash(prev, c); !bytes.Equal(got, want2[:]) {
		t.Errorf("ChainHash(prev, c) = %x, want %x", got, want2)
	}
	if bytes.Equal(ChainHash(prev, c), ChainHash(nil, c)) {
		t.Error("ChainHash ignores prev")
	}
}

func TestHashEventChains(t *testing.T) {
	evs := []Event{
		{Event: UserLogin, Time: epoch, ID: "a", User: "alice"},
		{Event: Exec, Time: epoch.Add(time.Second), ID: "b", User: "alice"},
		{Event: SessionEnd, Time: epoch.Add(2 * time.Second), ID: "c", User: "alice"},
	}
	prev := ""
	for i := range evs {
		h, err := HashEvent(prev, evs[i])
		if err != nil {
			t.Fatal(err)
		}
		c, _ := Canonical(evs[i])
		p, _ := hex.DecodeString(prev)
		if want := hex.EncodeToString(ChainHash(p, c)); h != want {
			t.Fatalf("event %d: HashEvent = %s, want %s", i, h, want)
		}
		evs[i].PrevHash, evs[i].Hash = prev, h
		prev = h
	}
	// Any change to a covered field changes the hash.
	changed := evs[1]
	changed.User = "mallory"
	if h, _ := HashEvent(changed.PrevHash, changed); h == evs[1].Hash {
		t.Error("changing the user kept the hash")
	}
	// The stored hashes do not influence the hash.
	same := evs[1]
	same.Hash, same.Seq = "ffff", 99
	if h, _ := HashEvent(same.PrevHash, same); h != evs[1].Hash {
		t.Error("Seq or Hash changed the computed hash")
	}
	if _, err := HashEvent("zz", evs[0]); err == nil {
		t.Error("HashEvent accepted a non-hex previous hash")
	}
}

func TestEscapeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{`say "hi"`, `say \"hi\"`},
		{`C:\dir`, `C:\\dir`},
		{"a\tb\x01", `a\tb\u0001`},
		{"<é>", "<é>"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	}
	for _, tc := range tests {
		if got := EscapeText(tc.in); got != tc.want {
			t.Errorf("EscapeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	ev := Event{Event: Exec, Time: epoch, ID: "0123456789abcdef0123456789abcdef", User: "alice", Login: "root",
		Node: "web1", SessionID: "s1", RemoteAddr: "10.1.2.3:50000", Success: true,
		Fields: map[string]any{"command": "uptime", "exit_code": 0}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("exec", "alice", "k", "v", []byte(`{"a":[1,2.5,"x",null,true],"b":{"c":"d"}}`))
	f.Add("user.login", "", "", "\x00\"\\", []byte(`1e400`))
	f.Add("", "é😀", "\u2028", "<&>", []byte(`{"z":{},"a":[]}`))
	f.Fuzz(func(t *testing.T, name, user, key, val string, extra []byte) {
		fields := map[string]any{key: val, key + "#n": len(val) - 3, key + "#b": len(name) > 2, key + "#u": uint64(len(user)) << 40} // < 2^53: survives a float64 decode
		var x any
		if json.Unmarshal(extra, &x) == nil {
			fields["extra"] = x
		}
		ev := Event{Event: name, User: user, Time: epoch, ID: "f", Fields: fields, Success: len(key)%2 == 0}
		c1, err := Canonical(ev)
		slow, slowErr := canonicalSlow(ev)
		if (err != nil) != (slowErr != nil) || !bytes.Equal(c1, slow) {
			t.Fatalf("Canonical = %s, %v; definition gives %s, %v", c1, err, slow, slowErr)
		}
		if err != nil {
			return // e.g. a float that overflows; must not panic
		}
		c2, err := Canonical(ev)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("Canonical not deterministic: %s vs %s (%v)", c1, c2, err)
		}
		if !json.Valid(c1) {
			t.Fatalf("invalid JSON: %q", c1)
		}
		var back Event
		if err := json.Unmarshal(c1, &back); err != nil {
			t.Fatalf("canonical form does not decode: %v", err)
		}
		c3, err := Canonical(back)
		if err != nil || !bytes.Equal(c1, c3) {
			t.Fatalf("round trip changed the canonical form:\n%s\n%s (%v)", c1, c3, err)
		}
	})
}
