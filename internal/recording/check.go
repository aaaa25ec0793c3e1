package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// AlteredError reports that a stored recording is not what was recorded:
// its bytes differ from the length and SHA-256 recorded when it completed
// (in the audit log), or it claims to be complete with no such record.
type AlteredError struct {
	SessionID string
	Reason    string
}

func (e *AlteredError) Error() string {
	return fmt.Sprintf("the recording of session %s was altered: %s", e.SessionID, e.Reason)
}

// CheckedReader reads a recording and checks it, as it is read, against
// the length and SHA-256 recorded when it completed: when the underlying
// reader ends, a mismatch replaces io.EOF with *AlteredError (and the same
// error is kept for later reads). The bytes are hashed once, on their way
// through: no second pass over the file.
type CheckedReader struct {
	r       io.Reader
	id      string
	length  int64
	want    string
	h       hash.Hash
	n       int64
	err     error
	checked bool
}

// NewCheckedReader wraps r, the recording of session id, which must have
// length bytes with SHA-256 sha256hex.
func NewCheckedReader(r io.Reader, id string, length int64, sha256hex string) *CheckedReader {
	return &CheckedReader{r: r, id: id, length: length, want: sha256hex, h: sha256.New()}
}

func (c *CheckedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.length {
		c.err = &AlteredError{SessionID: c.id, Reason: fmt.Sprintf("it has more than the %d bytes recorded", c.length)}
		return n, c.err
	}
	if errors.Is(err, io.EOF) {
		c.checked = true
		if c.err = c.verdict(); c.err == nil {
			c.err = io.EOF
		}
		return n, c.err
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *CheckedReader) verdict() error {
	if c.n != c.length {
		return &AlteredError{SessionID: c.id, Reason: fmt.Sprintf("it has %d bytes, %d were recorded", c.n, c.length)}
	}
	if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
		return &AlteredError{SessionID: c.id, Reason: fmt.Sprintf("its SHA-256 is %s, %s was recorded", got, c.want)}
	}
	return nil
}

// Finish reads what is left (without keeping it) and returns the outcome
// of the check: nil when the recording is intact. For a reader stopped
// early, such as a search that found enough.
func (c *CheckedReader) Finish() error {
	if !c.checked && c.err == nil {
		_, _ = io.Copy(io.Discard, c)
	}
	if errors.Is(c.err, io.EOF) {
		return nil
	}
	return c.err
}
