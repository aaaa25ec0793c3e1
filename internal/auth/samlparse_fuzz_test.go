package auth_test

import (
	"encoding/base64"
	"testing"

	"github.com/warden-sh/warden/internal/auth"
)

const fuzzIdPMetadata = `<?xml version="1.0"?>
<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/metadata">
  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>MIIB</X509Certificate></X509Data></KeyInfo></KeyDescriptor>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
  </IDPSSODescriptor>
</EntityDescriptor>`

const fuzzResponse = `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r1">` +
	`<saml:Issuer>https://idp.example.com/metadata</saml:Issuer><saml:Assertion ID="a1"><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject>` +
	`</saml:Assertion></samlp:Response>`

// FuzzSAMLParse: what Warden parses of SAML itself (IdP metadata, the
// SAMLResponse form value, the response's shape) never panics, and a
// response whose shape is accepted has exactly one Assertion and no
// comment.
func FuzzSAMLParse(f *testing.F) {
	f.Add([]byte(fuzzIdPMetadata))
	f.Add([]byte(`<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">` + fuzzIdPMetadata[22:] + `</EntitiesDescriptor>`))
	f.Add([]byte(fuzzResponse))
	f.Add([]byte(`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><!-- x --><a/></samlp:Response>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if ed, err := auth.ParseIdPMetadata(data); err == nil && (ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0) {
			t.Fatalf("metadata accepted without an entity ID or IDPSSODescriptor: %q", data)
		}
		raw, err := auth.DecodeSAMLResponse(base64.StdEncoding.EncodeToString(data))
		if err == nil && len(data) > 0 && string(raw) != string(data) {
			t.Fatalf("decode changed the response")
		}
		_, _ = auth.DecodeSAMLResponse(string(data))
		_ = auth.CheckSAMLResponseShape(data)
	})
}
