package ca

import (
	"errors"
	"strconv"
)

// decodeGeneration parses a bot generation (ExtBotGeneration,
// OIDBotGeneration): decimal digits only, at least 1.
func decodeGeneration(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 20 {
		return 0, errors.New("want a decimal number of 1 to 20 digits")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("want a decimal number")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, errors.New("want a number from 1 to 2^64-1")
	}
	return n, nil
}
