package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Signed checkpoints. The hash chain alone shows edits that do not rewrite
// everything after them; someone who can write the database can recompute
// the whole chain. So auth periodically appends a Checkpoint event whose
// Ed25519 signature covers the seq and hash of the event just before it:
// every event up to there is then fixed by a key the database does not
// hold. Anyone with the public key (ExportPublicKey) can check a log, a
// copy of the database or an exported JSON-lines file, offline. (The
// events' names, Checkpoint and ChainBroken, are in events.go.)

// DefaultCheckpointInterval is how often auth signs a checkpoint unless
// configured otherwise.
const DefaultCheckpointInterval = 10 * time.Minute

// checkpointDomain separates checkpoint signatures from any other use of
// the key.
const checkpointDomain = "warden audit checkpoint v1"

// ChainPos is a position in the chain: an event's seq and hex hash.
type ChainPos struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// CheckpointMessage returns the bytes a checkpoint signature covers: the
// seq and hash of the last event signed, the checkpoint's time and the
// interval at which auth writes checkpoints (so that a verifier knows when
// the next one was due).
func CheckpointMessage(seq int64, hash []byte, t time.Time, interval time.Duration) []byte {
	return fmt.Appendf(nil, "%s\nseq=%d\nhash=%x\ntime=%s\ninterval=%d\n",
		checkpointDomain, seq, hash, t.UTC().Format(time.RFC3339Nano), interval.Nanoseconds())
}

// KeyID names a checkpoint signing key: "sha256:" and the hex SHA-256 of
// the raw public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SignCheckpoint returns the Checkpoint event, at time t, signing the
// event at seq whose hash is hash.
func SignCheckpoint(key ed25519.PrivateKey, seq int64, hash []byte, t time.Time, interval time.Duration) Event {
	t = t.UTC()
	sig := ed25519.Sign(key, CheckpointMessage(seq, hash, t, interval))
	return Event{Event: Checkpoint, Time: t, Success: true, Fields: map[string]any{
		"signed_seq":  seq,
		"signed_hash": hex.EncodeToString(hash),
		"key_id":      KeyID(key.Public().(ed25519.PublicKey)),
		"signature":   base64.StdEncoding.EncodeToString(sig),
		"interval":    interval.String(),
	}}
}

// CheckpointInfo is what a checkpoint event says.
type CheckpointInfo struct {
	SignedSeq  int64
	SignedHash []byte
	KeyID      string
	Signature  []byte
	Interval   time.Duration
	Time       time.Time
}

// ParseCheckpoint reads the fields of a Checkpoint event.
func ParseCheckpoint(ev Event) (CheckpointInfo, error) {
	if ev.Event != Checkpoint {
		return CheckpointInfo{}, fmt.Errorf("not a %s event", Checkpoint)
	}
	var (
		ci  CheckpointInfo
		err error
	)
	str := func(k string) string {
		s, ok := ev.Fields[k].(string)
		if !ok && err == nil {
			err = fmt.Errorf("checkpoint field %s missing or not a string", k)
		}
		return s
	}
	ci.KeyID, ci.Time = str("key_id"), ev.Time
	hashHex, sigB64, interval := str("signed_hash"), str("signature"), str("interval")
	if err != nil {
		return CheckpointInfo{}, err
	}
	if ci.SignedSeq, err = int64Field(ev.Fields["signed_seq"]); err != nil {
		return CheckpointInfo{}, fmt.Errorf("checkpoint field signed_seq: %w", err)
	}
	if ci.SignedHash, err = hex.DecodeString(hashHex); err != nil || len(ci.SignedHash) != sha256.Size {
		return CheckpointInfo{}, errors.New("checkpoint field signed_hash is not a SHA-256")
	}
	if ci.Signature, err = base64.StdEncoding.DecodeString(sigB64); err != nil || len(ci.Signature) != ed25519.SignatureSize {
		return CheckpointInfo{}, errors.New("checkpoint field signature is not an Ed25519 signature")
	}
	if ci.Interval, err = time.ParseDuration(interval); err != nil {
		return CheckpointInfo{}, fmt.Errorf("checkpoint field interval: %w", err)
	}
	return ci, nil
}

// int64Field reads an integer field as decoded from JSON (float64 or
// json.Number) or as written (int64, int).
func int64Field(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case int:
		return int64(v), nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, fmt.Errorf("%v is not an integer", v)
		}
		return int64(v), nil
	case json.Number:
		return strconv.ParseInt(string(v), 10, 64)
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

// CheckCheckpoint checks a Checkpoint event found in the chain right after
// the event (prevSeq, prevHash): it must sign exactly that event, with one
// of keys. It returns the checkpoint's fields, or an error saying what is
// wrong.
func CheckCheckpoint(ev Event, prevSeq int64, prevHash []byte, keys []ed25519.PublicKey) (CheckpointInfo, error) {
	ci, err := ParseCheckpoint(ev)
	if err != nil {
		return ci, err
	}
	if ci.SignedSeq != prevSeq || !bytes.Equal(ci.SignedHash, prevHash) {
		return ci, fmt.Errorf("checkpoint signs seq %d hash %x, but the event before it is seq %d hash %x: events before it were rewritten",
			ci.SignedSeq, ci.SignedHash, prevSeq, prevHash)
	}
	var key ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == ci.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return ci, fmt.Errorf("checkpoint signed by key %s, which is not among the public keys given", ci.KeyID)
	}
	if !ed25519.Verify(key, CheckpointMessage(ci.SignedSeq, ci.SignedHash, ci.Time, ci.Interval), ci.Signature) {
		return ci, errors.New("checkpoint signature is invalid: checkpoint forged or altered")
	}
	return ci, nil
}

// MarshalPublicKey encodes a checkpoint verification key as PEM (PKIX
// "PUBLIC KEY").
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode audit public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeys reads every Ed25519 "PUBLIC KEY" PEM block in data.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse audit public key: %w", err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse audit public key: %T is not an Ed25519 key", k)
		}
		keys = append(keys, ek)
	}
	if len(keys) == 0 {
		return nil, errors.New("parse audit public key: no PEM \"PUBLIC KEY\" block")
	}
	return keys, nil
}
