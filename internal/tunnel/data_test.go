package tunnel

import (
	"strings"
	"testing"
)

func TestPreambleRoundTrip(t *testing.T) {
	tk := NewTicket()
	if len(tk) != 2*TicketBytes || NewTicket() == tk {
		t.Fatalf("ticket %q", tk)
	}
	for _, kind := range []byte{DataKindNode, DataKindUser} {
		b := Preamble(kind, tk)
		if len(b) != PreambleLen {
			t.Fatalf("preamble length %d, want %d", len(b), PreambleLen)
		}
		k, got, err := ParsePreamble(b)
		if err != nil || k != kind || got != tk {
			t.Fatalf("parse: %c %q %v", k, got, err)
		}
	}
	for _, bad := range []string{
		"",
		DataMagic,
		"WDAX" + "u" + tk + "\n",
		DataMagic + "u" + tk + "\r",
		DataMagic + "z" + tk + "\n",
		DataMagic + "u" + tk[:62] + "zz\n",
		DataMagic + "u" + strings.Repeat("AB", TicketBytes) + "\n",
		DataMagic + "u" + tk + "\n\n",
	} {
		if _, _, err := ParsePreamble([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzParsePreamble: the first bytes of a data connection come from anyone
// who can reach the proxy's port.
func FuzzParsePreamble(f *testing.F) {
	f.Add(Preamble(DataKindUser, NewTicket()))
	f.Add(Preamble(DataKindNode, NewTicket()))
	f.Add([]byte(DataMagic + "u\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, ticket, err := ParsePreamble(b)
		if err != nil {
			return
		}
		if kind != DataKindNode && kind != DataKindUser || len(ticket) != 2*TicketBytes {
			t.Fatalf("accepted kind %q ticket %q", kind, ticket)
		}
		if string(Preamble(kind, ticket)) != string(b) {
			t.Fatalf("round trip of %q", b)
		}
	})
}
