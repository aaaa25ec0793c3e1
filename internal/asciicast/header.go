package asciicast

import (
	"errors"
	"fmt"
)

// Version is the only asciicast format version this package reads and writes.
const Version = 2

// Limits on terminal dimensions accepted in headers and resize events.
const (
	MinDimension = 1
	MaxDimension = 10000
)

// Event types.
const (
	TypeOutput = "o"
	TypeInput  = "i"
	TypeResize = "r"
	TypeMarker = "m"
)

// ErrClosed is returned by Writer methods after Close.
var ErrClosed = errors.New("asciicast: writer closed")

// Header is the first line of an asciicast v2 recording.
type Header struct {
	Version int `json:"version"`
	Width   int `json:"width"`
	Height  int `json:"height"`
	// Timestamp is the Unix time (seconds) the recording started.
	Timestamp int64 `json:"timestamp,omitempty"`
	// Duration is the total length in seconds, when known up front.
	Duration float64 `json:"duration,omitempty"`
	// IdleTimeLimit is a hint for players to cap pauses (seconds).
	IdleTimeLimit float64 `json:"idle_time_limit,omitempty"`
	Command       string  `json:"command,omitempty"`
	Title         string  `json:"title,omitempty"`
	// Env usually holds TERM and SHELL.
	Env   map[string]string `json:"env,omitempty"`
	Theme *Theme            `json:"theme,omitempty"`
}

// Theme is the optional colour theme of a recording.
type Theme struct {
	Foreground string `json:"fg"`
	Background string `json:"bg"`
	// Palette is 8 or 16 colours separated by colons.
	Palette string `json:"palette"`
}

// Validate reports whether h is a header this package will write or accept.
func (h Header) Validate() error {
	if h.Version != Version {
		return fmt.Errorf("unsupported version %d (want %d)", h.Version, Version)
	}
	if err := checkDimensions(h.Width, h.Height); err != nil {
		return err
	}
	if h.Timestamp < 0 {
		return fmt.Errorf("negative timestamp %d", h.Timestamp)
	}
	if h.Duration < 0 || h.IdleTimeLimit < 0 {
		return errors.New("negative duration or idle_time_limit")
	}
	return nil
}

func checkDimensions(width, height int) error {
	if width < MinDimension || width > MaxDimension {
		return fmt.Errorf("width %d out of range %d..%d", width, MinDimension, MaxDimension)
	}
	if height < MinDimension || height > MaxDimension {
		return fmt.Errorf("height %d out of range %d..%d", height, MinDimension, MaxDimension)
	}
	return nil
}
