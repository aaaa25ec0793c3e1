package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCheckedReader(t *testing.T) {
	data := []byte(`{"version":2,"width":80,"height":24}` + "\n" + `[0.1,"o","hello"]` + "\n")
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	edited := bytes.Replace(data, []byte("hello"), []byte("HELLO"), 1)
	tests := []struct {
		name   string
		stored []byte
		reason string
	}{
		{"intact", data, ""},
		{"same length, bytes changed", edited, "its SHA-256 is"},
		{"truncated", data[:len(data)-3], "has 52 bytes, 55 were recorded"},
		{"longer", append(append([]byte{}, data...), 'x'), "more than the"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time: the check does not depend on read sizes.
			c := NewCheckedReader(iotest.OneByteReader(bytes.NewReader(tc.stored)), "s1", int64(len(data)), want)
			got, err := io.ReadAll(c)
			var ae *AlteredError
			if tc.reason == "" {
				if err != nil || !bytes.Equal(got, data) || c.Finish() != nil {
					t.Fatalf("intact recording: %v", err)
				}
				return
			}
			if !errors.As(err, &ae) || ae.SessionID != "s1" || !strings.Contains(err.Error(), tc.reason) ||
				!strings.Contains(err.Error(), "session s1 was altered") {
				t.Fatalf("ReadAll = %v, want an AlteredError containing %q", err, tc.reason)
			}
			if !errors.As(c.Finish(), &ae) {
				t.Fatalf("Finish after the mismatch = %v", c.Finish())
			}
		})
	}
	// A reader stopped early is checked by Finish, which reads the rest.
	c := NewCheckedReader(bytes.NewReader(edited), "s2", int64(len(data)), want)
	if _, err := c.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	var ae *AlteredError
	if err := c.Finish(); !errors.As(err, &ae) {
		t.Fatalf("Finish = %v, want an AlteredError", err)
	}
	c = NewCheckedReader(bytes.NewReader(data), "s3", int64(len(data)), want)
	if _, err := c.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatalf("Finish of an intact recording = %v", err)
	}
}
