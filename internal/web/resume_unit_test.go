package web

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/warden-sh/warden/internal/testkit"
)

// TestRing checks the output ring against a plain buffer: writes bounded
// by the window, reads from any held offset, acknowledgements, growth
// and wrap-around.
func TestRing(t *testing.T) {
	var r ring
	var all bytes.Buffer // every byte written, at its offset
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := make([]byte, rng.IntN(96<<10))
		for j := range p {
			p[j] = byte(i + j)
		}
		n := r.write(p)
		if held := r.end - r.start; held > termWindow {
			t.Fatalf("holds %d bytes, over the window", held)
		}
		if n < len(p) && r.end-r.start != termWindow {
			t.Fatalf("wrote %d of %d with room left", n, len(p))
		}
		all.Write(p[:n])
		if r.end != int64(all.Len()) {
			t.Fatalf("end %d, wrote %d", r.end, all.Len())
		}
		off := r.start + rng.Int64N(r.end-r.start+1)
		got := make([]byte, rng.IntN(300<<10))
		k := r.read(off, got)
		if want := all.Bytes()[off:min(off+int64(len(got)), r.end)]; !bytes.Equal(got[:k], want) {
			t.Fatalf("read at %d: %d bytes differ", off, k)
		}
		r.ack(r.start + rng.Int64N(r.end-r.start+1))
	}
}

// TestTerminalGrace: a terminal no page shows for the grace window ends,
// and its token then names nothing; a writer waiting for room is let go.
func TestTerminalGrace(t *testing.T) {
	reg := newTerminals(0)
	reg.grace = 50e6 // 50 ms
	term := newTerminal(reg, "owner", "carol", true)
	if err := reg.add(term); err != nil {
		t.Fatal(err)
	}
	att := &attachment{cancel: func() {}}
	tok, err := term.attach(att, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.lookup(tok, "owner", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.lookup(tok, "other", "carol"); err == nil {
		t.Fatal("token accepted from another browser session")
	}
	term.detach(att)
	wrote := make(chan error, 1)
	go func() {
		_, err := term.Write(make([]byte, termWindow+1)) // one byte over: waits
		wrote <- err
	}()
	testkit.WaitFor(t, "the terminal to end", func() bool { _, err := reg.lookup(tok, "owner", "carol"); return err != nil })
	if err := <-wrote; err == nil {
		t.Fatal("the waiting writer was not let go")
	}
	if reg.count("owner") != 0 {
		t.Fatal("the ended terminal is still registered")
	}
}
