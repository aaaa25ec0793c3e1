package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// The decoders below read Warden's JSON extension values token by token with
// an exact expected shape, so hostile input can only fail: sizes are checked
// before parsing, counts while parsing, and duplicate trait names are
// refused rather than silently merged.

// decodeStringList parses a JSON array of strings with at most maxItems.
func decodeStringList(s string, maxItems int) ([]string, error) {
	if len(s) > MaxExtensionLen {
		return nil, fmt.Errorf("value of %d bytes, at most %d allowed", len(s), MaxExtensionLen)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	list, err := readStringArray(dec, maxItems, false)
	if err != nil {
		return nil, err
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return list, nil
}

// decodeTraits parses a JSON object whose values are arrays of strings.
func decodeTraits(s string) (map[string][]string, error) {
	if len(s) > MaxExtensionLen {
		return nil, fmt.Errorf("value of %d bytes, at most %d allowed", len(s), MaxExtensionLen)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	traits := make(map[string][]string)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad JSON: want a trait name")
		}
		if err := validateTraitKey(key); err != nil {
			return nil, err
		}
		if _, dup := traits[key]; dup {
			return nil, fmt.Errorf("duplicate trait %q", key)
		}
		if len(traits) >= MaxTraitKeys {
			return nil, fmt.Errorf("more than %d traits", MaxTraitKeys)
		}
		vals, err := readStringArray(dec, MaxTraitValues, true)
		if err != nil {
			return nil, fmt.Errorf("trait %q: %w", key, err)
		}
		for _, v := range vals {
			if err := validateTraitValue(v); err != nil {
				return nil, fmt.Errorf("trait %q: %w", key, err)
			}
		}
		traits[key] = vals
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return traits, nil
}

// readStringArray reads [ "a", "b", ... ]. With allowNull a JSON null reads
// as an empty list (what encoding/json writes for a nil slice).
func readStringArray(dec *json.Decoder, maxItems int, allowNull bool) ([]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if tok == nil && allowNull {
		return []string{}, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errors.New("bad JSON: want an array of strings")
	}
	list := []string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		s, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad JSON: array element is not a string")
		}
		if len(list) >= maxItems {
			return nil, fmt.Errorf("more than %d items", maxItems)
		}
		list = append(list, s)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	return list, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("bad JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("bad JSON: want %q", want)
	}
	return nil
}

func expectEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("bad JSON: trailing data")
	}
	return nil
}

// encodeTime is a time as a JSON string: RFC 3339 with nanoseconds, UTC.
func encodeTime(t time.Time) string {
	return `"` + t.UTC().Format(time.RFC3339Nano) + `"`
}

// decodeTime parses what encodeTime writes.
func decodeTime(s string) (time.Time, error) {
	v, err := decodeString(s, 64)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", truncate(v))
	}
	return t, nil
}

// decodeString parses one JSON string of at most maxLen bytes.
func decodeString(s string, maxLen int) (string, error) {
	if len(s) > maxLen+2 {
		return "", fmt.Errorf("value of %d bytes, at most %d allowed", len(s), maxLen+2)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("bad JSON: %w", err)
	}
	v, ok := tok.(string)
	if !ok {
		return "", errors.New("bad JSON: want a string")
	}
	if err := expectEOF(dec); err != nil {
		return "", err
	}
	return v, nil
}
