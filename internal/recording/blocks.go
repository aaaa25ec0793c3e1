package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
)

// A completed recording has, besides the SHA-256 of all its bytes, the
// SHA-256 of each BlockSize bytes (the last block may be shorter), kept in
// <Dir>/<session>.blocks, and the SHA-256 of that list (its root) goes
// into the audit log's recording.complete with the whole hash. A reader
// by ranges (the web player seeking in a 1 GiB recording) then checks
// the blocks it serves against the audit log without reading the rest.
const BlockSize = 256 << 10

// blockHasher hashes what is written to it block by block.
type blockHasher struct {
	cur  hash.Hash
	n    int    // bytes in the current block
	sums []byte // one sha256.Size sum per completed block
}

func newBlockHasher() *blockHasher { return &blockHasher{cur: sha256.New()} }

func (b *blockHasher) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(len(p), BlockSize-b.n)
		b.cur.Write(p[:k])
		b.n += k
		p = p[k:]
		if b.n == BlockSize {
			b.sums = b.cur.Sum(b.sums)
			b.cur.Reset()
			b.n = 0
		}
	}
	return total, nil
}

// list returns the block sums, with the last partial block's.
func (b *blockHasher) list() []byte {
	out := bytes.Clone(b.sums)
	if b.n > 0 {
		out = b.cur.Sum(out)
	}
	return out
}

// BlocksRoot is the hex SHA-256 of a block list, as recording.complete
// records it.
func BlocksRoot(list []byte) string {
	sum := sha256.Sum256(list)
	return hex.EncodeToString(sum[:])
}

// blockCount is the number of blocks of a recording of length bytes.
func blockCount(length int64) int64 {
	return (length + BlockSize - 1) / BlockSize
}

// BlockCheckedReaderAt reads a completed recording at random offsets and
// checks every block a read touches against its block list, whose root
// the caller checked against the audit log (NewBlockCheckedReaderAt). A
// block that differs fails the read with *AlteredError. The last blocks
// checked are kept, so that reads in small pieces (an HTTP range served
// 32 KiB at a time) hash each block once.
type BlockCheckedReaderAt struct {
	ra     io.ReaderAt
	id     string
	length int64
	list   []byte

	mu    sync.Mutex
	cache [4]checkedBlock
	next  int
}

type checkedBlock struct {
	index int64
	data  []byte
	ok    bool
}

// NewBlockCheckedReaderAt checks list against root and its length against
// the recording's, then returns the reader; *AlteredError when they do not
// match.
func NewBlockCheckedReaderAt(ra io.ReaderAt, id string, length int64, list []byte, root string) (*BlockCheckedReaderAt, error) {
	if BlocksRoot(list) != root {
		return nil, &AlteredError{SessionID: id, Reason: "its block hashes are not those the audit log recorded"}
	}
	if int64(len(list)) != blockCount(length)*sha256.Size {
		return nil, &AlteredError{SessionID: id, Reason: fmt.Sprintf("it has %d block hashes for %d bytes", len(list)/sha256.Size, length)}
	}
	return &BlockCheckedReaderAt{ra: ra, id: id, length: length, list: list}, nil
}

// ReadAt reads len(p) bytes at off, checked. Reads past the recorded
// length end with io.EOF.
func (r *BlockCheckedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("recording: negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.length {
			return n, io.EOF
		}
		k, err := r.copyFrom(p[n:], pos)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyFrom copies into dst from the checked block holding pos, up to the
// block's end.
func (r *BlockCheckedReaderAt) copyFrom(dst []byte, pos int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	block, err := r.block(pos / BlockSize)
	if err != nil {
		return 0, err
	}
	return copy(dst, block[pos%BlockSize:]), nil
}

// block returns block i, checked. Callers hold r.mu.
func (r *BlockCheckedReaderAt) block(i int64) ([]byte, error) {
	for _, c := range r.cache {
		if c.ok && c.index == i {
			return c.data, nil
		}
	}
	slot := &r.cache[r.next]
	r.next = (r.next + 1) % len(r.cache)
	size := min(BlockSize, r.length-i*BlockSize)
	if cap(slot.data) < BlockSize {
		slot.data = make([]byte, BlockSize)
	}
	slot.ok = false
	data := slot.data[:size]
	if _, err := r.ra.ReadAt(data, i*BlockSize); err != nil {
		if err == io.EOF {
			return nil, &AlteredError{SessionID: r.id, Reason: fmt.Sprintf("it is shorter than the %d bytes recorded", r.length)}
		}
		return nil, fmt.Errorf("recording: read %s: %w", r.id, err)
	}
	sum := sha256.Sum256(data)
	if want := r.list[i*sha256.Size : (i+1)*sha256.Size]; !bytes.Equal(sum[:], want) {
		return nil, &AlteredError{SessionID: r.id, Reason: fmt.Sprintf("bytes %d to %d differ from what was recorded", i*BlockSize, i*BlockSize+size)}
	}
	slot.index, slot.data, slot.ok = i, data, true
	return data, nil
}
