package nodeagent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/idfile"
)

// eventJournal keeps a node's audit events on disk until auth has them, so
// that neither a crash of the node agent nor a restart while auth is
// unreachable loses them. Events are appended as JSON lines when emitted
// (a killed process loses nothing written), fsynced before each delivery
// attempt, and the file is emptied once everything in it is delivered.
// Replays are harmless: auth stores each event id once.
type eventJournal struct {
	path string
	f    *os.File
	size int64
}

// maxJournalLine bounds one journaled event when reading the file back.
const maxJournalLine = 1 << 20

// openEventJournal opens (creating, mode 0600) the journal at path and
// returns the events it still holds, oldest first. A torn last line (a
// crash mid-write) is skipped.
func openEventJournal(path string) (*eventJournal, []audit.Event, error) {
	var pending []audit.Event
	skipped := 0
	data, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("open audit journal: %w", err)
	default:
		sc := bufio.NewScanner(data)
		sc.Buffer(make([]byte, 64<<10), maxJournalLine)
		for sc.Scan() {
			var ev audit.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ID == "" || ev.Event == "" {
				skipped++
				continue
			}
			pending = append(pending, ev)
		}
		err := sc.Err()
		data.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("read audit journal: %w", err)
		}
	}
	if skipped > 1 {
		return nil, nil, fmt.Errorf("audit journal %s has %d unreadable lines", path, skipped)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if len(pending) > maxQueuedEvents {
		pending = pending[len(pending)-maxQueuedEvents:]
	}
	return &eventJournal{path: path, f: f, size: st.Size()}, pending, nil
}

// journalLine encodes ev as one journal line.
func journalLine(ev audit.Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// appendLine writes one encoded line.
func (j *eventJournal) appendLine(line []byte) error {
	n, err := j.f.Write(line)
	j.size += int64(n)
	return err
}

// reset empties the journal: everything in it was delivered.
func (j *eventJournal) reset() error {
	if j.size == 0 {
		return nil
	}
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	j.size = 0
	return nil
}

// rewrite replaces the journal with just the events still queued, when
// delivered ones make up most of a large file.
func (j *eventJournal) rewrite(queued []audit.Event) error {
	var buf []byte
	for _, ev := range queued {
		line, err := journalLine(ev)
		if err != nil {
			return err
		}
		buf = append(buf, line...)
	}
	if err := idfile.WriteAtomic(j.path, buf, 0o600); err != nil {
		return err
	}
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	j.f.Close()
	j.f, j.size = nf, int64(len(buf))
	return nil
}

func (j *eventJournal) close() error { return j.f.Close() }
