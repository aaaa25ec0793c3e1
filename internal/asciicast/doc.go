// Package asciicast reads, writes, plays and searches asciicast v2
// recordings, the format Warden uses for session recordings so that the
// stock asciinema player and "asciinema cat" can replay them too.
//
// A recording is a newline-delimited JSON stream: a header object on the
// first line, then one event per line, each an array
// [seconds, type, data] where type is "o" (terminal output), "i" (input),
// "r" (resize, data "COLSxROWS") or "m" (marker). See
// https://docs.asciinema.org/manual/asciicast/v2/.
//
// The Writer is built for the hot path of a live session: it escapes event
// data by hand into a reused buffer, keeps multi-byte UTF-8 sequences that a
// PTY read split across two chunks intact, and replaces invalid bytes with
// U+FFFD so every line is valid JSON. The Reader treats its input as hostile:
// line and header sizes are bounded and every event is validated. Play
// replays output with (scaled, capped) timing and Search finds text in output
// and in typed input with terminal escape sequences removed.
//
// The package is core code: standard library only.
package asciicast
