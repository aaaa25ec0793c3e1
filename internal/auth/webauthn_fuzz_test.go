package auth

import (
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
)

// FuzzWebAuthnResponse feeds what a browser posts (an assertion or an
// attestation, JSON with base64url CBOR inside) to the parsers auth runs
// on it before any check: nothing panics, and an assertion's user handle
// is at most what the lookup bounds.
func FuzzWebAuthnResponse(f *testing.F) {
	f.Add([]byte(`{"id":"AQID","rawId":"AQID","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AA","userHandle":"AQ"}}`))
	f.Add([]byte(`{"id":"AQID","rawId":"AQID","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxWebAuthnJSON {
			return
		}
		_ = parsedHandle(json.RawMessage(data))
		_, _ = protocol.ParseCredentialRequestResponseBytes(data)
		_, _ = protocol.ParseCredentialCreationResponseBytes(data)
	})
}
