package auditsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/warden-sh/warden/internal/audit"
)

// tailWindow is how much of the file's end is read to find its last line.
const tailWindow = 64 << 10

// fileDest appends events as JSON lines.
type fileDest struct {
	f       *os.File // O_APPEND: an external truncation (log rotation) is safe
	lastSeq int64    // seq of the last complete line (0 if none)
}

func (*fileDest) name() string { return "file" }

// openFileDest opens (creating) path for appending. A line cut short by a
// crash is removed, and the seq of the last complete line is read back.
func openFileDest(path string) (*fileDest, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	d := &fileDest{f: f}
	if err := d.recover(); err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit file %q: %w", path, err)
	}
	return d, nil
}

func (d *fileDest) recover() error {
	end, err := d.f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	start := max(0, end-tailWindow)
	buf := make([]byte, end-start)
	if _, err := d.f.ReadAt(buf, start); err != nil && err != io.EOF {
		return err
	}
	// Everything after the last newline is an incomplete line.
	complete := bytes.LastIndexByte(buf, '\n') + 1
	if complete == 0 && start > 0 {
		return fmt.Errorf("last line longer than %d bytes", tailWindow)
	}
	if size := start + int64(complete); size != end {
		if err := d.f.Truncate(size); err != nil {
			return fmt.Errorf("drop incomplete last line: %w", err)
		}
		if err := d.f.Sync(); err != nil {
			return err
		}
	}
	lines := bytes.Split(bytes.TrimSuffix(buf[:complete], []byte("\n")), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) > 0 {
		var ev struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal(last, &ev); err != nil {
			return fmt.Errorf("read last line: %w", err)
		}
		d.lastSeq = ev.Seq
	}
	return nil
}

// deliver appends evs in one write and fsyncs. On failure the file is cut
// back to its previous size so a retry does not duplicate lines.
func (d *fileDest) deliver(_ context.Context, evs []audit.Event) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // one line per event
	enc.SetEscapeHTML(false)
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			return fmt.Errorf("encode event seq %d: %w", ev.Seq, err)
		}
	}
	st, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("append to audit file: %w", err)
	}
	_, err = d.f.Write(buf.Bytes())
	if err == nil {
		err = d.f.Sync()
	}
	if err != nil {
		if terr := d.f.Truncate(st.Size()); terr != nil {
			return fmt.Errorf("append to audit file: %w (and restoring its size: %v)", err, terr)
		}
		return fmt.Errorf("append to audit file: %w", err)
	}
	d.lastSeq = evs[len(evs)-1].Seq
	return nil
}

func (d *fileDest) close() error { return d.f.Close() }
