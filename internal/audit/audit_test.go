package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestEffectiveLimit(t *testing.T) {
	tests := []struct{ in, want int }{
		{-1, DefaultLimit}, {0, DefaultLimit}, {1, 1}, {DefaultLimit + 1, DefaultLimit + 1},
		{MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit}, {1 << 40, MaxLimit},
	}
	for _, tc := range tests {
		if got := (Query{Limit: tc.in}).EffectiveLimit(); got != tc.want {
			t.Errorf("EffectiveLimit of Limit %d = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestFieldsKeepLargeNumbers: 64-bit integers in fields (a certificate
// serial beyond 2^53) survive decoding and encoding again, at every level,
// and the decoded event hashes as the original did.
func TestFieldsKeepLargeNumbers(t *testing.T) {
	const serial = uint64(18446744073709551557) // > 2^53; a float64 makes it 18446744073709551616
	ev := Event{Event: AuthAttempt, Time: time.Unix(1, 0).UTC(), ID: "n1",
		Fields: Fields{"cert_serial": serial, "ratio": 2.5, "nested": map[string]any{"ids": []uint64{serial, 1}}}}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Event
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Fatalf("re-encoded event differs:\n%s\n%s", raw, again)
	}
	if !strings.Contains(string(again), `"cert_serial":18446744073709551557`) {
		t.Fatalf("serial lost: %s", again)
	}
	c1, err := Canonical(ev)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Canonical(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1, c2) {
		t.Fatalf("decoded event hashes differently:\n%s\n%s", c1, c2)
	}
	var none Event
	if err := json.Unmarshal([]byte(`{"event":"x","fields":null}`), &none); err != nil || none.Fields != nil {
		t.Fatalf("null fields: %v %v", none.Fields, err)
	}
}
