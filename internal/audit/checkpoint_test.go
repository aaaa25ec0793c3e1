package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// exportedLog builds a chained log of n exec events with a signed
// checkpoint after the first k, and returns it as JSON lines (what the
// audit sink writes).
func exportedLog(t *testing.T, key ed25519.PrivateKey, n, k int) []Event {
	t.Helper()
	var (
		out  []Event
		prev string
	)
	add := func(ev Event) {
		ev.Seq, ev.PrevHash = int64(len(out)+1), prev
		h, err := HashEvent(prev, ev)
		if err != nil {
			t.Fatal(err)
		}
		ev.Hash, prev = h, h
		out = append(out, ev)
	}
	for i := range n {
		add(Event{Event: Exec, ID: fmt.Sprintf("e%d", i+1), Time: epoch.Add(time.Duration(i) * time.Second), Success: true,
			Fields: map[string]any{"command": fmt.Sprintf("cmd %d", i+1), "serial": uint64(1) << 63}})
		if i+1 == k {
			last := out[len(out)-1]
			add(SignCheckpoint(key, last.Seq, mustDecodeHex(t, last.Hash), epoch.Add(time.Minute), time.Hour))
			out[len(out)-1].ID = "cp"
			// Re-hash with the id set.
			cp := out[len(out)-1]
			h, _ := HashEvent(cp.PrevHash, cp)
			out[len(out)-1].Hash, prev = h, h
		}
	}
	// Round trip through JSON lines, numbers kept exact.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, ev := range out {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	var back []Event
	for dec.More() {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		back = append(back, ev)
	}
	return back
}

func mustDecodeHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func verifyAll(keys []ed25519.PublicKey, evs []Event) VerifyResult {
	v := NewChainVerifier(keys)
	for _, ev := range evs {
		if v.Add(ev) != nil {
			break
		}
	}
	return v.Result()
}

// rechainFrom recomputes every hash, as someone rewriting the log would.
func rechainFrom(t *testing.T, evs []Event) {
	t.Helper()
	prev := evs[0].PrevHash
	for i := range evs {
		evs[i].PrevHash = prev
		h, err := HashEvent(prev, evs[i])
		if err != nil {
			t.Fatal(err)
		}
		evs[i].Hash, prev = h, h
	}
}

func TestChainVerifierCheckpoints(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	keys := []ed25519.PublicKey{pub}
	evs := exportedLog(t, priv, 6, 4)
	res := verifyAll(keys, evs)
	if !res.OK || res.Checked != 7 || res.Checkpoints != 1 || res.Signed.Seq != 4 || res.Last.Seq != 7 || res.Interval != time.Hour {
		t.Fatalf("intact export: %+v (%v)", res, res.FirstBad)
	}
	// A file starting later (after retention, or --after) verifies too.
	if res := verifyAll(keys, evs[2:]); !res.OK || res.Checkpoints != 1 {
		t.Fatalf("export from seq 3: %+v (%v)", res, res.FirstBad)
	}

	t.Run("body edited", func(t *testing.T) {
		evs := exportedLog(t, priv, 6, 4)
		evs[1].Fields["command"] = "rm -rf /"
		if res := verifyAll(keys, evs); res.OK || res.FirstBad.Seq != 2 || !strings.Contains(res.FirstBad.Reason, "altered") {
			t.Fatalf("%+v (%v)", res, res.FirstBad)
		}
	})
	t.Run("rewritten and re-chained before the checkpoint", func(t *testing.T) {
		evs := exportedLog(t, priv, 6, 4)
		evs[1].Fields["command"] = "rm -rf /"
		rechainFrom(t, evs)
		if res := verifyAll(nil, evs); !res.OK {
			t.Fatalf("the chain alone: %+v (%v)", res, res.FirstBad)
		}
		if res := verifyAll(keys, evs); res.OK || res.FirstBad.Seq != 5 || !strings.Contains(res.FirstBad.Reason, "rewritten") {
			t.Fatalf("%+v (%v)", res, res.FirstBad)
		}
	})
	t.Run("rewritten after the checkpoint", func(t *testing.T) {
		// Not detectable from the log alone: the documented limit.
		evs := exportedLog(t, priv, 6, 4)
		evs[6].Fields["command"] = "rm -rf /"
		rechainFrom(t, evs)
		if res := verifyAll(keys, evs); !res.OK || res.Signed.Seq != 4 {
			t.Fatalf("%+v (%v)", res, res.FirstBad)
		}
	})
	t.Run("event removed", func(t *testing.T) {
		evs := exportedLog(t, priv, 6, 4)
		evs = append(evs[:2], evs[3:]...)
		if res := verifyAll(keys, evs); res.OK || res.FirstBad.Seq != 4 || !strings.Contains(res.FirstBad.Reason, "expected seq 3") {
			t.Fatalf("%+v (%v)", res, res.FirstBad)
		}
	})
	t.Run("checkpoint from another key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(nil)
		evs := exportedLog(t, other, 6, 4)
		if res := verifyAll(keys, evs); res.OK || !strings.Contains(res.FirstBad.Reason, "not among the public keys") {
			t.Fatalf("%+v (%v)", res, res.FirstBad)
		}
	})
}

func TestPublicKeyPEM(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	pub2, _, _ := ed25519.GenerateKey(nil)
	a, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := MarshalPublicKey(pub2)
	keys, err := ParsePublicKeys(append(a, b...))
	if err != nil || len(keys) != 2 || !keys[0].Equal(pub) || !keys[1].Equal(pub2) {
		t.Fatalf("ParsePublicKeys = %v, %v", keys, err)
	}
	if _, err := ParsePublicKeys([]byte("not a key")); err == nil {
		t.Fatal("ParsePublicKeys accepted garbage")
	}
}
