package auditsink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// cursor is the last seq delivered to each destination, kept in a small
// JSON file ({"file": 120, "webhook": 118}) replaced atomically.
type cursor struct {
	path string
	mu   sync.Mutex
	seqs map[string]int64
}

func openCursor(path string) (*cursor, error) {
	c := &cursor{path: path, seqs: map[string]int64{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("read cursor: %w", err)
	}
	if err := json.Unmarshal(data, &c.seqs); err != nil {
		return nil, fmt.Errorf("read cursor %q: %w", path, err)
	}
	for k, v := range c.seqs {
		if v < 0 {
			return nil, fmt.Errorf("read cursor %q: negative seq %d for %s", path, v, k)
		}
	}
	return c, nil
}

func (c *cursor) get(dest string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqs[dest]
}

// set records seq for dest and makes it durable before returning: written
// to a temporary file, fsynced, renamed over the cursor and the directory
// fsynced, so a crash leaves either the old or the new cursor.
func (c *cursor) set(dest string, seq int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.seqs[dest]
	c.seqs[dest] = seq
	if err := c.writeLocked(); err != nil {
		if had {
			c.seqs[dest] = old
		} else {
			delete(c.seqs, dest)
		}
		return err
	}
	return nil
}

func (c *cursor) writeLocked() error {
	data, err := json.Marshal(c.seqs)
	if err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(c.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write cursor %q: %w", c.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
