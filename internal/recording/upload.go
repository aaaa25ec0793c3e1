package recording

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// upload tracks one spooled recording's progress towards auth.
type upload struct {
	id                           string
	castPath, statePath, ackPath string
	wake                         chan struct{} // capacity 1
	ack                          *os.File      // uploader goroutine only

	mu      sync.Mutex
	st      spoolState
	durable int64 // fsynced bytes of the data file
}

func (u *upload) notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// save persists the state atomically. Callers hold u.mu or own u alone.
func (u *upload) save() error {
	data, err := json.Marshal(u.st)
	if err != nil {
		return fmt.Errorf("recording: encode spool state: %w", err)
	}
	if err := writeFileAtomic(u.statePath, data, true); err != nil {
		return fmt.Errorf("recording: write spool state of %s: %w", u.id, err)
	}
	return nil
}

// advance offers the data file's first n bytes for upload.
func (u *upload) advance(n int64) {
	u.mu.Lock()
	if n > u.durable {
		u.durable = n
	}
	u.mu.Unlock()
	u.notify()
}

// finish records the final length and hash (the data file is closed and
// fsynced) and lets the uploader complete the recording.
func (u *upload) finish(length int64, sum string) error {
	u.mu.Lock()
	u.durable = length
	u.st.Closed, u.st.Length, u.st.SHA256 = true, length, sum
	err := u.save()
	u.mu.Unlock()
	u.notify()
	return err
}

// snapshot is the uploader's view of an upload.
type snapshot struct {
	uploaded, durable int64
	closed            bool
	st                spoolState
}

func (u *upload) snapshot() snapshot {
	u.mu.Lock()
	defer u.mu.Unlock()
	return snapshot{uploaded: u.st.Uploaded, durable: u.durable, closed: u.st.Closed, st: u.st}
}

// setUploaded records a new acknowledged offset in memory and in the ack
// file. Called by the uploader goroutine only. A failure to persist is only
// logged: after a restart a stale offset makes the spool resend bytes auth
// already has, which auth accepts without duplicating them (or answers with
// an OffsetError pointing further on).
func (s *Spool) setUploaded(u *upload, n int64) {
	u.mu.Lock()
	u.st.Uploaded = n
	u.mu.Unlock()
	if err := u.writeAck(n); err != nil {
		s.log.Warn("persist upload offset", slog.String("session_id", u.id), slog.Any("err", err))
	}
}

// The ack file <session>.ack holds the acknowledged offset in one 16-byte
// record (offset, CRC-32 of it, magic) rewritten in place with a single
// write: it is replaced whole or not at all when the process dies, and a
// record torn by a power failure fails its checksum and reads as 0. It is
// not fsynced; see setUploaded for why a stale value is harmless.
const ackMagic = "WRak"

func encodeAck(n int64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(n))
	binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[:8]))
	copy(b[12:], ackMagic)
	return b
}

// decodeAck returns the offset in an ack record, or 0 if it is invalid.
func decodeAck(b []byte) int64 {
	if len(b) != 16 || string(b[12:]) != ackMagic || crc32.ChecksumIEEE(b[:8]) != binary.LittleEndian.Uint32(b[8:]) {
		return 0
	}
	n := int64(binary.LittleEndian.Uint64(b))
	return max(n, 0)
}

func (u *upload) writeAck(n int64) error {
	if u.ack == nil {
		f, err := os.OpenFile(u.ackPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		u.ack = f
	}
	_, err := u.ack.WriteAt(encodeAck(n), 0)
	return err
}

func (u *upload) closeAck() {
	if u.ack != nil {
		u.ack.Close()
		u.ack = nil
	}
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, ErrNotOwner) || errors.Is(err, ErrMismatch) || errors.Is(err, ErrCompleted) ||
		errors.Is(err, ErrInvalidID) || errors.Is(err, ErrChunkTooLarge) || errors.Is(err, ErrUnknownSession)
}

// runUpload sends u's bytes in order and completes it, retrying with
// backoff, until done or ctx ends.
func (s *Spool) runUpload(ctx context.Context, u *upload) {
	defer s.wg.Done()
	log := s.log.With(slog.String("session_id", u.id))
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
		u.closeAck()
	}()
	failures := 0
	retry := func(what string, err error) bool {
		failures++
		d := backoff(failures, s.cfg.MaxBackoff)
		if failures == 1 || failures%10 == 0 {
			log.Warn("recording upload failed; will retry", slog.String("op", what), slog.Int("attempt", failures),
				slog.Duration("backoff", d), slog.Any("err", err))
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	giveUp := func(what string, err error) {
		log.Error("recording upload failed permanently; files kept in the spool",
			slog.String("op", what), slog.String("dir", s.cfg.Dir), slog.Any("err", err))
	}

	// drop removes a recording that auth holds complete (or one with
	// nothing to hold) from the spool.
	drop := func() {
		if f != nil {
			f.Close()
			f = nil
		}
		u.closeAck()
		if err := s.removeFiles(u); err != nil {
			log.Warn("remove recording from the spool", slog.Any("err", err))
		}
		s.forget(u)
	}
	for ctx.Err() == nil {
		sn := u.snapshot()
		switch {
		case sn.uploaded < sn.durable:
			if f == nil {
				var err error
				if f, err = os.Open(u.castPath); err != nil {
					giveUp("open", err)
					return
				}
			}
			n, err := s.sendChunk(ctx, f, sn)
			var oe *OffsetError
			switch {
			case err == nil:
				failures = 0
				s.setUploaded(u, sn.uploaded+n)
				// Durable and on auth: only a retry after auth lost it
				// would read these bytes again.
				dropCache(f, sn.uploaded+n)
			case errors.As(err, &oe):
				if oe.Have > sn.durable || oe.Have == sn.uploaded || oe.Have < 0 {
					if sn.closed && oe.Have > sn.durable {
						giveUp("upload", fmt.Errorf("auth has %d bytes, more than the recording's %d: %w", oe.Have, sn.durable, err))
						return
					}
					if !retry("upload", err) {
						return
					}
					continue
				}
				log.Info("resuming recording upload at auth's offset", slog.Int64("from", sn.uploaded), slog.Int64("to", oe.Have))
				s.setUploaded(u, oe.Have)
			case permanent(err):
				giveUp("upload", err)
				return
			default:
				if !retry("upload", err) {
					return
				}
			}
		case sn.closed && sn.st.Length == 0:
			// The node died before the header reached the disk: there is
			// no recording to store (auth would not know it).
			log.Warn("interrupted recording is empty; nothing to upload", slog.Bool("interrupted", sn.st.Interrupted))
			drop()
			return
		case sn.closed:
			err := s.withSlot(ctx, func(ctx context.Context, _ []byte) error {
				return s.cfg.Uploader.Complete(ctx, sn.st.Meta, sn.st.Length, sn.st.SHA256, sn.st.Interrupted)
			})
			switch {
			case err == nil:
				drop()
				log.Debug("recording uploaded", slog.Int64("length", sn.st.Length), slog.Bool("interrupted", sn.st.Interrupted))
				return
			case errors.Is(err, ErrNotFound):
				log.Warn("auth lost the recording; uploading it again", slog.Any("err", err))
				if sn.uploaded == 0 && !retry("complete", err) { // nothing was sent: no hot loop
					return
				}
				s.setUploaded(u, 0)
			case permanent(err):
				giveUp("complete", err)
				return
			default:
				if !retry("complete", err) {
					return
				}
			}
		default:
			select {
			case <-u.wake:
			case <-ctx.Done():
				return
			}
		}
	}
}

// sendChunk uploads up to one chunk starting at the acknowledged offset.
func (s *Spool) sendChunk(ctx context.Context, f *os.File, sn snapshot) (int64, error) {
	var sent int64
	err := s.withSlot(ctx, func(ctx context.Context, buf []byte) error {
		n := min(sn.durable-sn.uploaded, int64(len(buf)))
		b := buf[:n]
		if _, err := f.ReadAt(b, sn.uploaded); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read spool file: %w", err)
		}
		if err := s.cfg.Uploader.Upload(ctx, sn.st.Meta, sn.uploaded, b); err != nil {
			return err
		}
		sent = n
		return nil
	})
	return sent, err
}

// withSlot runs fn with one of the bounded upload slots (and its chunk
// buffer) and a per-call timeout.
func (s *Spool) withSlot(ctx context.Context, fn func(context.Context, []byte) error) error {
	var buf []byte
	select {
	case buf = <-s.slots:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { s.slots <- buf }()
	if buf == nil {
		buf = make([]byte, s.cfg.ChunkSize)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UploadTimeout)
	defer cancel()
	return fn(ctx, buf)
}

// removeFiles deletes an uploaded recording: data first, so that a crash
// in between leaves a state file without data, which OpenSpool discards.
func (s *Spool) removeFiles(u *upload) error {
	for _, p := range []string{u.castPath, u.ackPath} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Remove(u.statePath); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// backoff is the wait before retry n (1-based): exponential from minBackoff,
// capped, with ±20% jitter.
func backoff(n int, limit time.Duration) time.Duration {
	d := min(minBackoff, limit)
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}
