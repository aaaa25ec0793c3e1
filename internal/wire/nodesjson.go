package wire

import (
	"slices"
	"time"
	"unicode/utf8"
)

// AppendNodesJSON appends nodes as a JSON array to dst: byte for byte what
// encoding/json's Marshal makes of them (HTML-safe escaping, label keys
// sorted), without its reflection, which was most of the CPU of listing
// ten thousand nodes (TestAppendNodesJSONMatchesMarshal compares the two).
// ok is false, with dst unchanged, for a time Marshal cannot encode (a
// year outside 0–9999): use encoding/json then.
func AppendNodesJSON(dst []byte, nodes []Node) (_ []byte, ok bool) {
	start := len(dst)
	dst = slices.Grow(dst, 2+len(nodes)*256)
	dst = append(dst, '[')
	var keys []string // label keys, reused
	for i := range nodes {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, keys, ok = nodes[i].appendJSON(dst, keys[:0]); !ok {
			return dst[:start], false
		}
	}
	return append(dst, ']'), true
}

// appendJSON appends n; keys is scratch space for its label keys.
func (n *Node) appendJSON(dst []byte, keys []string) (_ []byte, _ []string, ok bool) {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, n.ID)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, n.Name)
	dst = append(dst, `,"hostname":`...)
	dst = appendJSONString(dst, n.Hostname)
	if len(n.Labels) > 0 {
		dst = append(dst, `,"labels":{`...)
		for k := range n.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSONString(dst, n.Labels[k])
		}
		dst = append(dst, '}')
	}
	if n.Version != "" {
		dst = append(dst, `,"version":`...)
		dst = appendJSONString(dst, n.Version)
	}
	dst = append(dst, `,"since":`...)
	if dst, ok = appendJSONTime(dst, n.Since); !ok {
		return dst, keys, false
	}
	dst = append(dst, `,"last_seen":`...)
	if dst, ok = appendJSONTime(dst, n.LastSeen); !ok {
		return dst, keys, false
	}
	if n.Agentless {
		dst = append(dst, `,"agentless":true`...)
	}
	if n.Addr != "" {
		dst = append(dst, `,"addr":`...)
		dst = appendJSONString(dst, n.Addr)
	}
	return append(dst, '}'), keys, true
}

// appendJSONTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds).
func appendJSONTime(dst []byte, t time.Time) ([]byte, bool) {
	dst = append(dst, '"')
	out, err := t.AppendText(dst)
	if err != nil {
		return dst, false
	}
	return append(out, '"'), true
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping
// (its default): ", \ and control characters escaped, <, > and & as
// \u003c..., invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
