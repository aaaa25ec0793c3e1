package asciicast

import "strings"

// vtState is where a vtParser is inside an escape sequence.
type vtState uint8

const (
	vtGround    vtState = iota
	vtEscape            // after ESC
	vtEscInter          // after ESC and intermediate bytes
	vtCSI               // inside a control sequence
	vtString            // inside OSC, DCS, SOS, PM or APC, until ST (or BEL)
	vtStringEsc         // ESC seen inside a string: maybe ST
)

// maxCSIParams bounds the parameter bytes kept for one control sequence;
// longer ones are still consumed, their excess ignored.
const maxCSIParams = 32

// vtParser splits terminal data into text and controls, removing escape
// sequences. It is a small subset of the DEC/ECMA-48 parser state machine,
// enough to remove what terminals would not display. State persists across
// calls so sequences split between events are handled.
type vtParser struct {
	state  vtState
	params [maxCSIParams]byte
	np     int
}

// vtAction is what the parser found for one rune.
type vtAction uint8

const (
	vtNone    vtAction = iota // consumed as part of a sequence
	vtPrint                   // printable rune
	vtControl                 // C0 control or C1 control that starts no sequence, or DEL
	vtCSIDone                 // a control sequence ended; see final and params
)

// step feeds one rune. For vtCSIDone, final is the final byte and the
// parameters are in p.params[:p.np].
func (p *vtParser) step(r rune) (act vtAction, final rune) {
	switch p.state {
	case vtGround:
		switch {
		case r == 0x1b:
			p.state = vtEscape
			return vtNone, 0
		case r == 0x9b: // C1 CSI
			p.startCSI()
			return vtNone, 0
		case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f: // C1 OSC, DCS, SOS, PM, APC
			p.state = vtString
			return vtNone, 0
		case r < 0x20 || r == 0x7f:
			return vtControl, 0
		case r >= 0x80 && r < 0xa0:
			return vtControl, 0 // other C1 controls
		}
		return vtPrint, 0
	case vtEscape, vtEscInter:
		switch {
		case r == 0x1b:
			p.state = vtEscape
		case r == 0x18 || r == 0x1a: // CAN, SUB abort
			p.state = vtGround
		case r < 0x20:
			return vtControl, 0 // executed without leaving the sequence
		case r >= 0x20 && r <= 0x2f:
			p.state = vtEscInter
		case p.state == vtEscape && r == '[':
			p.startCSI()
		case p.state == vtEscape && (r == ']' || r == 'P' || r == 'X' || r == '^' || r == '_'):
			p.state = vtString
		default:
			p.state = vtGround // final byte (or garbage): sequence over
		}
		return vtNone, 0
	case vtCSI:
		switch {
		case r == 0x1b:
			p.state = vtEscape
		case r == 0x18 || r == 0x1a:
			p.state = vtGround
		case r < 0x20:
			return vtControl, 0
		case r >= 0x20 && r <= 0x3f:
			if p.np < len(p.params) {
				p.params[p.np] = byte(r)
				p.np++
			}
		case r >= 0x40 && r <= 0x7e:
			p.state = vtGround
			return vtCSIDone, r
		default:
			p.state = vtGround
		}
		return vtNone, 0
	case vtString:
		switch r {
		case 0x07, 0x9c: // BEL (xterm OSC terminator), C1 ST
			p.state = vtGround
		case 0x1b:
			p.state = vtStringEsc
		case 0x18, 0x1a:
			p.state = vtGround
		}
		return vtNone, 0
	case vtStringEsc:
		switch r {
		case '\\':
			p.state = vtGround
		case 0x1b:
		default:
			p.state = vtString
		}
		return vtNone, 0
	}
	p.state = vtGround
	return vtNone, 0
}

func (p *vtParser) startCSI() {
	p.state = vtCSI
	p.np = 0
}

// csiParam returns the i-th numeric parameter of the last control sequence,
// or def when it is absent or zero. Values stop growing past 1<<16.
func (p *vtParser) csiParam(i, def int) int {
	idx, n := 0, 0
	for _, c := range p.params[:p.np] {
		if c == ';' || c == ':' {
			if idx == i {
				break
			}
			idx++
			continue
		}
		if idx == i && c >= '0' && c <= '9' && n < 1<<16 {
			n = n*10 + int(c-'0')
		}
	}
	if n == 0 {
		return def
	}
	return n
}

// StripANSI removes ANSI/VT escape sequences from s: control sequences
// (CSI, 7- or 8-bit), OSC/DCS/SOS/PM/APC strings up to their terminator,
// and two- or three-byte ESC sequences, as well as BEL. Other characters,
// including \r, \n, \t and backspace, are kept; an unterminated sequence at
// the end is dropped.
func StripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 && strings.IndexByte(s, 0x07) < 0 && !strings.ContainsAny(s, "\u009b\u009d\u0090\u0098\u009e\u009f") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	var p vtParser
	for _, r := range s {
		switch act, _ := p.step(r); act {
		case vtPrint:
			b.WriteRune(r)
		case vtControl:
			if r != 0x07 {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}
