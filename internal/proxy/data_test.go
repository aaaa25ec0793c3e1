package proxy

import (
	"strings"
	"testing"
)

func TestPreambleRoundTrip(t *testing.T) {
	tk := newTicket()
	if len(tk) != 2*ticketBytes || newTicket() == tk {
		t.Fatalf("ticket %q", tk)
	}
	for _, kind := range []byte{dataKindNode, dataKindUser} {
		b := preamble(kind, tk)
		if len(b) != preambleLen {
			t.Fatalf("preamble length %d, want %d", len(b), preambleLen)
		}
		k, got, err := parsePreamble(b)
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
		DataMagic + "u" + strings.Repeat("AB", ticketBytes) + "\n",
		DataMagic + "u" + tk + "\n\n",
	} {
		if _, _, err := parsePreamble([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzParsePreamble: the first bytes of a data connection come from anyone
// who can reach the proxy's port.
func FuzzParsePreamble(f *testing.F) {
	f.Add(preamble(dataKindUser, newTicket()))
	f.Add(preamble(dataKindNode, newTicket()))
	f.Add([]byte(DataMagic + "u\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, ticket, err := parsePreamble(b)
		if err != nil {
			return
		}
		if kind != dataKindNode && kind != dataKindUser || len(ticket) != 2*ticketBytes {
			t.Fatalf("accepted kind %q ticket %q", kind, ticket)
		}
		if string(preamble(kind, ticket)) != string(b) {
			t.Fatalf("round trip of %q", b)
		}
	})
}
