package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/ca"
	"github.com/warden-sh/warden/internal/policy"
)

// The peer wire: what one proxy sends another over mutual TLS to reach a
// node whose tunnel ends at the other. The dialling proxy has decided the
// dial (the user's current roles allow the node, per-session MFA is
// satisfied); the request carries that decision, the node and the user's
// certificate identity, and the receiving proxy checks the current state
// (user, requests, locks) again itself before it connects the node. After
// an OK reply the connection carries the user's bytes both ways.
//
//	request: "WPD1" | uint32 length (big endian) | JSON (PeerDial)
//	reply:   0x00 (then the stream), or 0x01 | uint16 length | message
const (
	peerMagic = "WPD1"
	// maxPeerRequest bounds a request's JSON (an identity's traits are
	// bounded by the certificate rules; this is well above them).
	maxPeerRequest = 32 << 10
	// maxPeerRefusal bounds a refusal's message.
	maxPeerRefusal = 1024
	peerStatusOK   = 0
	peerStatusNo   = 1
	maxPeerNodeID  = 128
)

// PeerDial is a forwarded dial.
type PeerDial struct {
	// NodeID is the node whose tunnel ends at the receiving proxy.
	NodeID string `json:"node_id"`
	// ClientAddr is the user's address (host:port), for the node's session
	// and audit.
	ClientAddr string `json:"client_addr"`
	// Caller is the identity of the user's certificate, as issued.
	Caller PeerCaller `json:"caller"`
	// Deadline is when the dialling proxy ends the connection (the
	// certificate's expiry; zero: it does not).
	Deadline time.Time `json:"deadline,omitzero"`
	// Kube, when set, is a Kubernetes cluster the user's request is for
	// (NodeID is then the ID of the kube agent serving it): after an OK
	// reply the connection carries one HTTP/1.1 request to the receiving
	// proxy, which decides it again and forwards it to the agent.
	Kube string `json:"kube,omitempty"`
	// KubeSession, when set, is a live kube session (kubectl exec or
	// attach) running at the receiving proxy that the user joins, in
	// KubeJoinMode; NodeID and Kube are then empty. The receiving proxy
	// decides the join itself (JoinKube's rules); after an OK reply the
	// connection carries the participation (peerkubejoin.go).
	KubeSession  string `json:"kube_session,omitempty"`
	KubeJoinMode string `json:"kube_join_mode,omitempty"`
}

// PeerCaller is a user certificate's identity on the peer wire.
type PeerCaller struct {
	User          string              `json:"user"`
	Roles         []string            `json:"roles"`
	Traits        map[string][]string `json:"traits,omitempty"`
	RequestIDs    []string            `json:"request_ids,omitempty"`
	Issued        time.Time           `json:"issued"`
	Expires       time.Time           `json:"expires,omitzero"`
	MFADevice     string              `json:"mfa_device,omitempty"`
	BotInstance   string              `json:"bot_instance,omitempty"`
	BotGeneration uint64              `json:"bot_generation,omitempty"`
}

func peerCallerOf(c auth.Caller) PeerCaller {
	return PeerCaller{User: c.User, Roles: c.Roles, Traits: c.Traits, RequestIDs: c.RequestIDs, Issued: c.Issued,
		Expires: c.Expires, MFADevice: c.MFADevice, BotInstance: c.BotInstance, BotGeneration: c.BotGeneration}
}

// caller is the certificate identity as auth.CurrentCaller takes it.
func (p PeerCaller) caller() auth.Caller {
	return auth.Caller{Kind: auth.KindUser, User: p.User, Roles: p.Roles, Traits: p.Traits, RequestIDs: p.RequestIDs,
		Issued: p.Issued, Expires: p.Expires, MFADevice: p.MFADevice, BotInstance: p.BotInstance, BotGeneration: p.BotGeneration}
}

// validate checks every field as the certificate the identity came from
// was checked when issued.
func (d *PeerDial) validate() error {
	if d.KubeSession != "" {
		if err := validatePeerID(d.KubeSession); err != nil || len(d.KubeSession) > maxKubeSessionID {
			return errors.New("kube session: not a session id")
		}
		if d.KubeJoinMode != policy.JoinObserver && d.KubeJoinMode != policy.JoinPeer {
			return errors.New("kube join mode: observer or peer")
		}
		if d.NodeID != "" || d.Kube != "" {
			return errors.New("a kube session join names no node or cluster")
		}
	} else if err := validatePeerID(d.NodeID); err != nil {
		return fmt.Errorf("node id: %w", err)
	} else if d.KubeJoinMode != "" {
		return errors.New("kube join mode without a kube session")
	}
	if d.Kube != "" && !kubeClusterName(d.Kube) {
		return errors.New("kube: not a cluster name")
	}
	ap, err := netip.ParseAddrPort(d.ClientAddr)
	if err != nil || !ap.IsValid() {
		return errors.New("client address: not an IP address and port")
	}
	c := d.Caller
	id := ca.TLSIdentity{Kind: ca.KindUser, Username: c.User, Roles: c.Roles, Traits: c.Traits, RequestIDs: c.RequestIDs,
		MFADevice: c.MFADevice, BotInstance: c.BotInstance, BotGeneration: c.BotGeneration}
	if err := id.Validate(); err != nil {
		return fmt.Errorf("caller: %w", err)
	}
	if c.Issued.IsZero() || c.Issued.Year() > 9999 || c.Expires.Year() > 9999 || d.Deadline.Year() > 9999 {
		return errors.New("caller: invalid issue or expiry time")
	}
	if !c.Expires.IsZero() && c.Expires.Before(c.Issued) {
		return errors.New("caller: expires before it was issued")
	}
	return nil
}

// validatePeerID checks a node or proxy ID: a storage key part.
func validatePeerID(id string) error {
	if id == "" || len(id) > maxPeerNodeID {
		return errors.New("empty or too long")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("invalid character %q", c)
		}
	}
	if id[0] == '.' || id[0] == '-' {
		return errors.New("must start with a letter, digit or underscore")
	}
	return nil
}

// encodePeerDial frames d.
func encodePeerDial(d *PeerDial) ([]byte, error) {
	js, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if len(js) > maxPeerRequest {
		return nil, fmt.Errorf("peer dial of %d bytes: at most %d", len(js), maxPeerRequest)
	}
	b := make([]byte, 0, 8+len(js))
	b = append(b, peerMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	return append(b, js...), nil
}

// readPeerDial reads and validates one framed request; it reads no byte
// past it.
func readPeerDial(r io.Reader) (*PeerDial, error) {
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("peer dial: %w", err)
	}
	if string(head[:4]) != peerMagic {
		return nil, errors.New("peer dial: bad magic")
	}
	n := binary.BigEndian.Uint32(head[4:])
	if n == 0 || n > maxPeerRequest {
		return nil, fmt.Errorf("peer dial: length %d out of range", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("peer dial: %w", err)
	}
	return parsePeerDial(body)
}

// parsePeerDial decodes and validates a request's JSON strictly: unknown
// fields and trailing data are refused.
func parsePeerDial(body []byte) (*PeerDial, error) {
	if len(body) > maxPeerRequest {
		return nil, errors.New("peer dial: too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var d PeerDial
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("peer dial: %w", err)
	}
	if dec.More() {
		return nil, errors.New("peer dial: trailing data")
	}
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("peer dial: %w", err)
	}
	return &d, nil
}

// peerRefusal frames a refusal.
func peerRefusal(msg string) []byte {
	if len(msg) > maxPeerRefusal {
		msg = msg[:maxPeerRefusal]
	}
	msg = string(bytes.ToValidUTF8([]byte(msg), []byte("?")))
	if len(msg) > maxPeerRefusal {
		msg = msg[:maxPeerRefusal]
	}
	b := []byte{peerStatusNo}
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// errPeerRefused is a refusal from the peer, with its message.
type errPeerRefused string

func (e errPeerRefused) Error() string { return string(e) }

// readPeerReply reads the reply: nil for OK (the stream follows), an
// errPeerRefused with the peer's message, or another error.
func readPeerReply(r io.Reader) error {
	var st [1]byte
	if _, err := io.ReadFull(r, st[:]); err != nil {
		return fmt.Errorf("peer reply: %w", err)
	}
	switch st[0] {
	case peerStatusOK:
		return nil
	case peerStatusNo:
	default:
		return fmt.Errorf("peer reply: unknown status %d", st[0])
	}
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return fmt.Errorf("peer reply: %w", err)
	}
	n := binary.BigEndian.Uint16(l[:])
	if n > maxPeerRefusal {
		return fmt.Errorf("peer reply: refusal of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("peer reply: %w", err)
	}
	if !utf8.Valid(msg) {
		return errors.New("peer reply: refusal is not UTF-8")
	}
	return errPeerRefused(msg)
}
