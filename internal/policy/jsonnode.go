package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// maxJSONDepth bounds nesting in JSON input; a role is only a few levels deep.
const maxJSONDepth = 64

// jsonReader converts JSON values into yaml.Node trees carrying line numbers,
// so JSON input gets the same strict decoding and messages as YAML.
type jsonReader struct {
	data []byte
	dec  *json.Decoder
	// line is the 1-based line of data[pos]; both only move forward.
	pos, line int
}

func parseJSONNodes(data []byte) ([]*yaml.Node, error) {
	r := &jsonReader{data: data, dec: json.NewDecoder(bytes.NewReader(data)), line: 1}
	r.dec.UseNumber()
	var docs []*yaml.Node
	for {
		n, err := r.value(0)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse roles: line %d: invalid JSON: %w", r.line, err)
		}
		docs = append(docs, n)
	}
}

// tokenLine returns the line where the next token starts.
func (r *jsonReader) tokenLine() int {
	off := int(r.dec.InputOffset())
	for off < len(r.data) {
		c := r.data[off]
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ',' && c != ':' {
			break
		}
		off++
	}
	for ; r.pos < off && r.pos < len(r.data); r.pos++ {
		if r.data[r.pos] == '\n' {
			r.line++
		}
	}
	return r.line
}

func (r *jsonReader) value(depth int) (*yaml.Node, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	line := r.tokenLine()
	tok, err := r.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) && depth > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
			for r.dec.More() {
				kline := r.tokenLine()
				ktok, err := r.dec.Token()
				if err != nil {
					return nil, noEOF(err)
				}
				key, ok := ktok.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v, not a string", ktok)
				}
				val, err := r.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content,
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: kline}, val)
			}
			if err := r.closing(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
			for r.dec.More() {
				val, err := r.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, val)
			}
			if err := r.closing(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", rune(t))
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Line: line}, nil
	case json.Number:
		tag := "!!int"
		if _, err := t.Int64(); err != nil {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String(), Line: line}, nil
	case bool:
		v := "false"
		if t {
			v = "true"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v, Line: line}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// closing consumes the '}' or ']' that ends the current object or array.
func (r *jsonReader) closing() error {
	_, err := r.dec.Token()
	return noEOF(err)
}

// noEOF turns an end of input inside a value into an error.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
