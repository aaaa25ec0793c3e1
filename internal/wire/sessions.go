package wire

import "time"

// LiveSession is a shell or command session in progress.
type LiveSession struct {
	ID         string `json:"id"`
	User       string `json:"user"`
	Login      string `json:"login"`
	Node       string `json:"node"`
	NodeID     string `json:"node_id"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Kind is "shell" or "exec" (a command); TTY tells whether it has a
	// terminal, which joining needs.
	Kind         string    `json:"kind,omitempty"`
	TTY          bool      `json:"tty"`
	Started      time.Time `json:"started"`
	Participants []string  `json:"participants"`
}
