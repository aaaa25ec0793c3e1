// Package recording moves session recordings off the node that produced
// them, without losing a byte.
//
// The node side is a Spool: every interactive session writes its asciicast
// v2 stream to a local file (<Dir>/<session>.cast) next to a small state
// file. Writes are buffered in memory and handed to a per-recording flusher
// that writes, hashes and periodically fsyncs them, so recording never waits
// for the network. A per-recording uploader sends the fsynced bytes to auth
// in ordered, size-bounded chunks through an Uploader, persisting the
// acknowledged offset after each chunk; it retries with backoff while auth is
// unreachable. When the session ends the recording is completed with its
// length and SHA-256 and the local files are deleted. A recording left behind
// by a killed node is found by the next OpenSpool, cut back to its last
// complete event line, uploaded and completed as interrupted.
//
// The auth side is a Store: recordings on disk as <Dir>/<session>.cast plus a
// JSON state file. Append enforces ordering (the offset must be the stored
// length), idempotency (a retried chunk is accepted without being written
// twice) and ownership (only the node that created a recording may extend or
// complete it); Complete verifies the length and SHA-256 of the stored bytes.
//
// The package is core code: standard library and internal/asciicast only; the
// transport between Spool and Store is the caller's Uploader.
package recording
