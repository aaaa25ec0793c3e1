package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

func TestRefusalStream(t *testing.T) {
	for _, reason := range []string{"", "warden: access is locked", strings.Repeat("é", 500)} {
		b := RefusalStream(reason)
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok || string(line) != "SSH-2.0-Warden" {
			t.Fatalf("version line: %q", b)
		}
		length, padding := binary.BigEndian.Uint32(rest), int(rest[4])
		if int(length)+4 != len(rest) || len(rest)%8 != 0 || padding < 4 {
			t.Fatalf("packet: length %d, padding %d, %d bytes", length, padding, len(rest))
		}
		var msg struct {
			Type        uint8
			Reason      uint32
			Description string
			Language    string
		}
		if err := ssh.Unmarshal(rest[5:len(rest)-padding], &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Type != 1 || msg.Reason != 11 || !utf8.ValidString(msg.Description) || len(msg.Description) > maxRefusal {
			t.Fatalf("disconnect: %+v", msg)
		}
		if len(reason) <= maxRefusal && msg.Description != reason {
			t.Fatalf("reason %q, want %q", msg.Description, reason)
		}
	}
}

func TestRefusalCode(t *testing.T) {
	tagged := errors.New("through the proxy: warden: " + Tag(CodeSessionMFA, `node "web1" requires an MFA check for each session`))
	if !HasCode(tagged, CodeSessionMFA) {
		t.Fatalf("%v: no code", tagged)
	}
	for _, err := range []error{nil, errors.New(`node "web1" requires an MFA check for each session`), errors.New("[session-mfa-required]")} {
		if HasCode(err, CodeSessionMFA) {
			t.Fatalf("%v: code found", err)
		}
	}
}
