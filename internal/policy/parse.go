package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseRoles reads one or more roles from YAML (documents separated by
// "---", or a top-level list) or JSON (an object, an array, or several
// objects one after another). Decoding is strict: an unknown field, a
// duplicate field or a value of the wrong type is an error that names the
// line, e.g. `line 7: unknown field "logns" in allow`. Each role is then
// validated (see Role.Validate) and an empty version is set to "v1".
func ParseRoles(data []byte) ([]*Role, error) {
	docs, err := parseNodes(data)
	if err != nil {
		return nil, err
	}
	var roles []*Role
	seen := make(map[string]bool)
	for _, doc := range docs {
		items := []*yaml.Node{doc}
		if doc.Kind == yaml.SequenceNode {
			items = doc.Content
		}
		for _, item := range items {
			item = resolve(item)
			if isNull(item) {
				continue
			}
			r := new(Role)
			if err := decodeValue(item, reflect.ValueOf(r).Elem(), "role"); err != nil {
				return nil, err
			}
			if err := r.Validate(); err != nil {
				return nil, fmt.Errorf("line %d: %w", item.Line, err)
			}
			if seen[r.Metadata.Name] {
				return nil, fmt.Errorf("line %d: role %q is defined twice", item.Line, r.Metadata.Name)
			}
			seen[r.Metadata.Name] = true
			if r.Version == "" {
				r.Version = VersionV1
			}
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, errors.New("no roles found in input")
	}
	return roles, nil
}

// MarshalRole renders r as "yaml" or "json" (indented). The output parses
// back with ParseRoles.
func MarshalRole(r *Role, format string) ([]byte, error) {
	if r == nil {
		return nil, errors.New("marshal role: nil role")
	}
	switch strings.ToLower(format) {
	case "yaml", "yml":
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(r); err != nil {
			return nil, fmt.Errorf("marshal role %q as yaml: %w", r.Metadata.Name, err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("marshal role %q as yaml: %w", r.Metadata.Name, err)
		}
		return buf.Bytes(), nil
	case "json":
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("marshal role %q as json: %w", r.Metadata.Name, err)
		}
		return append(out, '\n'), nil
	default:
		return nil, fmt.Errorf("marshal role: unknown format %q (want yaml or json)", format)
	}
}

// parseNodes turns the input into one node per document. JSON goes through
// encoding/json (YAML parsers reject some valid JSON, such as "\/"), and is
// converted to yaml.Node trees with the right line numbers so that both
// formats share one strict decoder.
func parseNodes(data []byte) ([]*yaml.Node, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return parseJSONNodes(data)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse roles: %w", err)
		}
		if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
			docs = append(docs, resolve(doc.Content[0]))
		}
	}
	return docs, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	// Aliases may chain; a bound keeps malformed input from looping.
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 32; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "an unsupported value"
}

var (
	stringsType  = reflect.TypeFor[Strings]()
	durationType = reflect.TypeFor[Duration]()
	labelsType   = reflect.TypeFor[Labels]()
)

// decodeValue strictly decodes n into v. name is the field (or "role")
// being decoded, used in error messages.
func decodeValue(n *yaml.Node, v reflect.Value, name string) error {
	n = resolve(n)
	if n == nil {
		return fmt.Errorf("%s: unresolvable alias", name)
	}
	if isNull(n) {
		v.SetZero()
		return nil
	}
	switch v.Type() {
	case stringsType:
		s, err := decodeStrings(n)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.Set(reflect.ValueOf(s))
		return nil
	case durationType:
		d, err := decodeDuration(n)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.Set(reflect.ValueOf(d))
		return nil
	case labelsType:
		return decodeLabels(n, v, name)
	}
	switch v.Kind() {
	case reflect.String:
		s, err := scalarString(n)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fmt.Errorf("line %d: %s: expected true or false, got %s", n.Line, name, kindName(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.SetBool(b)
		return nil
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return fmt.Errorf("line %d: %s: expected a whole number, got %s", n.Line, name, kindName(n))
		}
		var i int
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.SetInt(int64(i))
		return nil
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.Struct {
			p := reflect.New(v.Type().Elem())
			if err := decodeStruct(n, p.Elem(), name); err != nil {
				return err
			}
			v.Set(p)
			return nil
		}
		if v.Type().Elem().Kind() != reflect.Bool {
			return fmt.Errorf("%s: unsupported field type %s", name, v.Type())
		}
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fmt.Errorf("line %d: %s: expected true or false, got %s", n.Line, name, kindName(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
		}
		v.Set(reflect.ValueOf(&b))
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: expected a list, got %s", n.Line, name, kindName(n))
		}
		if v.Type().Elem().Kind() == reflect.String {
			s, err := decodeStrings(n)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", n.Line, name, err)
			}
			v.Set(reflect.ValueOf([]string(s)).Convert(v.Type()))
			return nil
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeValue(item, out.Index(i), fmt.Sprintf("%s[%d]", name, i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	case reflect.Struct:
		return decodeStruct(n, v, name)
	}
	return fmt.Errorf("%s: unsupported field type %s", name, v.Type())
}

func decodeStruct(n *yaml.Node, v reflect.Value, name string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping, got %s", n.Line, name, kindName(n))
	}
	t := v.Type()
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: field names must be strings", n.Line, name)
		}
		idx := fieldIndex(t, k.Value)
		if idx < 0 {
			return fmt.Errorf("line %d: unknown field %q in %s", k.Line, k.Value, name)
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: duplicate field %q in %s", k.Line, k.Value, name)
		}
		seen[k.Value] = true
		if err := decodeValue(val, v.Field(idx), k.Value); err != nil {
			return err
		}
	}
	return nil
}

// fieldIndex finds the struct field whose yaml tag name is key.
func fieldIndex(t reflect.Type, key string) int {
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == key {
			return i
		}
	}
	return -1
}

func decodeLabels(n *yaml.Node, v reflect.Value, name string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping of label keys to values, got %s", n.Line, name, kindName(n))
	}
	out := make(Labels, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k == nil || val == nil {
			return fmt.Errorf("line %d: %s: unresolvable alias", n.Line, name)
		}
		key, err := scalarString(k)
		if err != nil {
			return fmt.Errorf("line %d: %s: label key: %w", k.Line, name, err)
		}
		if _, dup := out[key]; dup {
			return fmt.Errorf("line %d: duplicate label %q in %s", k.Line, key, name)
		}
		vals, err := decodeStrings(val)
		if err != nil {
			return fmt.Errorf("line %d: %s[%q]: %w", val.Line, name, key, err)
		}
		out[key] = vals
	}
	v.Set(reflect.ValueOf(out))
	return nil
}

// scalarString accepts a string scalar, or a number written without quotes
// (a login or label value such as 1001 is a string to us). Booleans, null,
// lists and mappings are type errors.
func scalarString(n *yaml.Node) (string, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		if n == nil {
			return "", errors.New("expected a string, got an unresolvable alias")
		}
		return "", fmt.Errorf("expected a string, got %s", kindName(n))
	}
	switch n.Tag {
	case "!!str", "!!int", "!!float", "":
		return n.Value, nil
	}
	return "", fmt.Errorf("expected a string, got %s (quote it if you mean the text %q)", kindName(n), n.Value)
}

func decodeStrings(n *yaml.Node) (Strings, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		s, err := scalarString(n)
		if err != nil {
			return nil, fmt.Errorf("expected a string or a list of strings: %w", err)
		}
		return Strings{s}, nil
	case yaml.SequenceNode:
		out := make(Strings, 0, len(n.Content))
		for i, item := range n.Content {
			s, err := scalarString(item)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("expected a string or a list of strings, got %s", kindName(n))
}

func decodeDuration(n *yaml.Node) (Duration, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		got := "an unresolvable alias"
		if n != nil {
			got = kindName(n)
		}
		return 0, fmt.Errorf("expected a duration such as \"8h\" or \"30m\", got %s", got)
	}
	if n.Tag == "!!int" && n.Value != "0" {
		return 0, fmt.Errorf("duration %s needs a unit, e.g. \"%sh\" or \"%sm\"", n.Value, n.Value, n.Value)
	}
	return parseDuration(n.Value)
}
