package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// softKey is a WebAuthn authenticator in software (ES256, attestation
// "none"), for tests of what auth accepts and refuses: each field a
// browser or a key could get wrong can be set wrong on purpose.
type softKey struct {
	t      *testing.T
	priv   *ecdsa.PrivateKey
	credID []byte
	handle []byte // the user handle, from registration
	// What it puts in its answers: the origin the browser saw, the RP ID
	// it signs for, its sign counter, and whether it verified the user.
	origin, rpID string
	counter      uint32
	uv           bool
}

var b64 = base64.RawURLEncoding

func newSoftKey(t *testing.T) *softKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	// The relying party of passkeyFixture.
	return &softKey{t: t, priv: priv, credID: id, origin: "https://warden.test:3080", rpID: "warden.test", uv: true}
}

// options reads what the key needs from creation or request options.
type keyOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

func (k *softKey) clientData(typ string, opts json.RawMessage) []byte {
	var o keyOptions
	if err := json.Unmarshal(opts, &o); err != nil {
		k.t.Fatal(err)
	}
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": o.PublicKey.Challenge, "origin": k.origin, "crossOrigin": false})
	if o.PublicKey.User.ID != "" {
		h, err := b64.DecodeString(o.PublicKey.User.ID)
		if err != nil {
			k.t.Fatal(err)
		}
		k.handle = h
	}
	return cd
}

func (k *softKey) authData(attested bool) []byte {
	rp := sha256.Sum256([]byte(k.rpID))
	flags := byte(0x01) // UP
	if k.uv {
		flags |= 0x04
	}
	if attested {
		flags |= 0x40
	}
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.counter)
	if attested {
		out = append(out, make([]byte, 16)...) // AAGUID
		out = binary.BigEndian.AppendUint16(out, uint16(len(k.credID)))
		out = append(out, k.credID...)
		pub, err := k.priv.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			k.t.Fatal(err)
		}
		x, y := pub[1:33], pub[33:65]
		cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
		if err != nil {
			k.t.Fatal(err)
		}
		out = append(out, cose...)
	}
	return out
}

// create answers credential creation options as navigator.credentials.create would.
func (k *softKey) create(opts json.RawMessage) json.RawMessage {
	cd := k.clientData("webauthn.create", opts)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(true)})
	if err != nil {
		k.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.credID), "rawId": b64.EncodeToString(k.credID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(cd), "attestationObject": b64.EncodeToString(att)}})
	return out
}

// get answers request options as navigator.credentials.get would; the
// counter goes up by one first.
func (k *softKey) get(opts json.RawMessage) json.RawMessage {
	k.counter++
	cd := k.clientData("webauthn.get", opts)
	ad := k.authData(false)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte(nil), ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.credID), "rawId": b64.EncodeToString(k.credID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(k.handle)}})
	return out
}
