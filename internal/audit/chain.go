package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The audit log is a hash chain: every stored event carries
//
//	Hash = hex(ChainHash(PrevHash, Canonical(event)))
//
// where PrevHash is the Hash of the event stored just before it (empty for
// the first event of a log). Changing, removing or reordering a stored event
// breaks the chain at that event; see docs/audit-events.md for the scheme.

// Canonical returns the deterministic JSON encoding of ev that the hash
// chain covers: ev's JSON object without "seq", "hash" and "prev_hash", with
// the keys of every object sorted by their UTF-8 bytes, no insignificant
// whitespace, numbers written as encoding/json wrote them, and strings
// escaped minimally (\" \\ \b \f \n \r \t, other control characters as
// \u00xx, everything else as raw UTF-8).
//
// Canonical(decoded) == Canonical(ev) for an event decoded from
// Canonical(ev): Fields decodes numbers as json.Number, exactly as written.
func Canonical(ev Event) ([]byte, error) {
	if b, ok := canonicalFast(ev); ok {
		return b, nil
	}
	return canonicalSlow(ev)
}

// canonicalSlow is the definition of Canonical: encode, then re-encode
// canonically.
func canonicalSlow(ev Event) ([]byte, error) {
	ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("canonical audit event %q: %w", ev.Event, err)
	}
	out, err := canonicalJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("canonical audit event %q: %w", ev.Event, err)
	}
	return out, nil
}

// canonicalFast writes the same bytes as canonicalSlow without encoding and
// decoding the event's own fields (only Fields goes the slow way): it is on
// every write. It declines (false) whatever it does not handle exactly like
// encoding/json, which canonicalSlow then does: invalid UTF-8 and times
// encoding/json refuses. TestCanonicalFastMatchesSlow keeps the two equal,
// and fails when Event gains a field this does not write.
func canonicalFast(ev Event) ([]byte, bool) {
	for _, s := range [...]string{ev.Code, ev.Error, ev.Event, ev.ID, ev.Login, ev.Node, ev.RemoteAddr, ev.SessionID, ev.User} {
		if !utf8.ValidString(s) {
			return nil, false
		}
	}
	t, err := ev.Time.MarshalJSON()
	if err != nil {
		return nil, false
	}
	b := make([]byte, 0, 256)
	b = append(b, '{')
	str := func(key, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = appendString(b, v)
	}
	// Keys in sorted order.
	str("code", ev.Code, true)
	str("error", ev.Error, true)
	str("event", ev.Event, false)
	if len(ev.Fields) > 0 {
		b = append(b, `,"fields":`...)
		mark := len(b)
		var ok bool
		if b, ok = appendFlatFields(b, ev.Fields); !ok {
			raw, err := json.Marshal(ev.Fields)
			if err != nil {
				return nil, false
			}
			if b, err = appendCanonicalJSON(b[:mark], raw); err != nil {
				return nil, false
			}
		}
	}
	str("id", ev.ID, false)
	str("login", ev.Login, true)
	str("node", ev.Node, true)
	str("remote_addr", ev.RemoteAddr, true)
	str("session_id", ev.SessionID, true)
	b = append(b, `,"success":`...)
	b = strconv.AppendBool(b, ev.Success)
	b = append(b, `,"time":`...)
	b = append(b, t...)
	str("user", ev.User, true)
	return append(b, '}'), true
}

// appendFlatFields writes fields canonically when every value is a string
// (valid UTF-8), a bool, an integer or a list of strings (a kube.request's
// groups), the common case; otherwise it
// reports false and the caller takes the general path from b's length.
func appendFlatFields(b []byte, fields map[string]any) ([]byte, bool) {
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		switch v := v.(type) {
		case string:
			if !utf8.ValidString(v) {
				return b, false
			}
		case bool, int, int64, int32, uint, uint64, uint32:
		case []string:
			for _, e := range v {
				if !utf8.ValidString(e) {
					return b, false
				}
			}
		default:
			return b, false
		}
		if !utf8.ValidString(k) {
			return b, false
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		switch v := fields[k].(type) {
		case string:
			b = appendString(b, v)
		case bool:
			b = strconv.AppendBool(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case uint:
			b = strconv.AppendUint(b, uint64(v), 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case uint32:
			b = strconv.AppendUint(b, uint64(v), 10)
		case []string:
			if v == nil {
				b = append(b, "null"...)
				break
			}
			b = append(b, '[')
			for j, e := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendString(b, e)
			}
			b = append(b, ']')
		}
	}
	return append(b, '}'), true
}

// canonicalJSON re-encodes raw, a JSON value written by encoding/json (so
// without duplicate keys), in the canonical form described at Canonical.
func canonicalJSON(raw []byte) ([]byte, error) {
	return appendCanonicalJSON(make([]byte, 0, len(raw)), raw)
}

func appendCanonicalJSON(b, raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	return appendCanonical(b, v)
}

func appendCanonical(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if v {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case json.Number:
		return append(b, v...), nil
	case string:
		return appendString(b, v), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendCanonical(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys) // Go strings compare by bytes: UTF-8 byte order
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendCanonical(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	default:
		return nil, fmt.Errorf("canonical JSON: unexpected %T", v)
	}
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string with the minimal escaping of
// Canonical. s comes from a JSON decode, so it is valid UTF-8.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ChainHash returns SHA-256(prev || canonical): the hash of an event whose
// canonical encoding is canonical and whose predecessor's hash is prev (nil
// for the first event of a log).
func ChainHash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}

// HashEvent returns the hex hash of ev chained after the event whose hex
// hash is prevHex ("" for the first event): what a consumer of the log
// (a SIEM) recomputes to check ev.Hash.
func HashEvent(prevHex string, ev Event) (string, error) {
	prev, err := hex.DecodeString(prevHex)
	if err != nil {
		return "", fmt.Errorf("hash audit event %q: bad previous hash: %w", ev.ID, err)
	}
	c, err := Canonical(ev)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(ChainHash(prev, c)), nil
}

// EscapeText returns s as it appears inside a JSON string of the canonical
// encoding (without the quotes), for matching text against stored events.
func EscapeText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r == utf8.RuneError }) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	b := appendString(nil, s)
	return string(b[1 : len(b)-1])
}
