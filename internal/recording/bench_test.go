package recording

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

// bulkChunk is 4 KiB of typical terminal output (what one PTY read yields
// under bulk output): text lines, CRLF, a few escape sequences.
func bulkChunk() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 4096; i++ {
		fmt.Fprintf(&b, "drwxr-xr-x 2 alice staff 4096 Nov 22 05:%02d \x1b[01;34mdirectory-%d\x1b[0m\r\n", i%60, i)
	}
	return b.Bytes()[:4096]
}

// BenchmarkRecordingOverhead pushes bulk output through
// SpoolRecording.Output (encode, buffer, write, hash, fsync every 250ms,
// upload to a Store on the same disk) and, as the baseline, through a
// writer to io.Discard; it reports both throughputs and their ratio. The
// end-to-end figure (recording on vs off for a real SSH PTY session) is
// node.BenchmarkRecordingOverhead.
func BenchmarkRecordingOverhead(b *testing.B) {
	chunk := bulkChunk()
	const perRound = 64 << 20 // bytes per measured round
	rounds := perRound / len(chunk)

	st := newStore(b)
	sp := newSpool(b, b.TempDir(), &directUploader{store: st, nodeID: "node-1"}, func(c *SpoolConfig) {
		c.FlushInterval, c.ChunkSize, c.MaxBackoff = DefaultFlushInterval, DefaultChunkSize, time.Second
	})
	var discard, spool time.Duration
	b.SetBytes(perRound)
	n := 0
	for b.Loop() {
		t0 := time.Now()
		for range rounds {
			if _, err := io.Discard.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		discard += time.Since(t0)

		r, err := sp.Start(testMeta(fmt.Sprintf("be%04x", n)), testHeader(), false)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		for range rounds {
			if err := r.Output(chunk); err != nil {
				b.Fatal(err)
			}
		}
		spool += time.Since(t1)
		if _, _, err := r.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		waitPending(b, sp, 0)
		st.Delete(fmt.Sprintf("be%04x", n))
		n++
		b.StartTimer()
	}
	mb := float64(perRound) * float64(n) / 1e6
	b.ReportMetric(mb/discard.Seconds(), "discard_MB/s")
	b.ReportMetric(mb/spool.Seconds(), "spool_MB/s")
	b.ReportMetric(discard.Seconds()/spool.Seconds(), "spool/discard")
}
