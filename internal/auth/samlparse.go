package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"

	"github.com/warden-sh/warden/internal/wire"
)

// What Warden itself parses of SAML, apart from what crewjam/saml does:
// the IdP's metadata, the form value carrying a response, and the shape
// of the response before crewjam/saml checks it. FuzzSAMLParse covers
// all three.

const (
	nsSAMLProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsSAMLAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	// maxSAMLDepth bounds the nesting of a response's elements.
	maxSAMLDepth = 32
)

// ParseIdPMetadata reads an IdP's metadata: an EntityDescriptor, or an
// EntitiesDescriptor of which the first entity with an IDPSSODescriptor
// is taken. It must name an entity ID, a sign-on service and a signing
// certificate.
func ParseIdPMetadata(data []byte) (*saml.EntityDescriptor, error) {
	if len(data) > wire.MaxSAMLMetadata {
		return nil, fmt.Errorf("metadata larger than %d bytes", wire.MaxSAMLMetadata)
	}
	if bytes.Contains(data, []byte("<!DOCTYPE")) || bytes.Contains(data, []byte("<!ENTITY")) {
		return nil, errors.New("metadata with a DOCTYPE is refused")
	}
	var head struct{ XMLName xml.Name }
	if err := xml.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("not XML: %v", err)
	}
	var ed *saml.EntityDescriptor
	switch head.XMLName.Local {
	case "EntityDescriptor":
		ed = new(saml.EntityDescriptor)
		if err := xml.Unmarshal(data, ed); err != nil {
			return nil, fmt.Errorf("EntityDescriptor: %v", err)
		}
	case "EntitiesDescriptor":
		var all saml.EntitiesDescriptor
		if err := xml.Unmarshal(data, &all); err != nil {
			return nil, fmt.Errorf("EntitiesDescriptor: %v", err)
		}
		for i := range all.EntityDescriptors {
			if len(all.EntityDescriptors[i].IDPSSODescriptors) > 0 {
				ed = &all.EntityDescriptors[i]
				break
			}
		}
		if ed == nil {
			return nil, errors.New("no entity with an IDPSSODescriptor")
		}
	default:
		return nil, fmt.Errorf("root element %q is not SAML metadata", head.XMLName.Local)
	}
	if ed.EntityID == "" {
		return nil, errors.New("no entityID")
	}
	if len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("no IDPSSODescriptor: not an identity provider's metadata")
	}
	sso, signing := false, false
	for _, d := range ed.IDPSSODescriptors {
		for _, e := range d.SingleSignOnServices {
			sso = sso || e.Binding == saml.HTTPRedirectBinding && e.Location != ""
		}
		for _, k := range d.KeyDescriptors {
			if k.Use == "signing" || k.Use == "" {
				for _, c := range k.KeyInfo.X509Data.X509Certificates {
					signing = signing || strings.TrimSpace(c.Data) != ""
				}
			}
		}
	}
	if !sso {
		return nil, errors.New("no SingleSignOnService with the HTTP-Redirect binding")
	}
	if !signing {
		return nil, errors.New("no signing certificate")
	}
	return ed, nil
}

// DecodeSAMLResponse decodes the SAMLResponse form value (base64 of the
// XML, line breaks allowed), bounded by MaxSAMLResponse.
func DecodeSAMLResponse(v string) ([]byte, error) {
	if v == "" {
		return nil, errors.New("empty")
	}
	if len(v) > MaxSAMLResponse {
		return nil, fmt.Errorf("larger than %d bytes", MaxSAMLResponse)
	}
	v = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, v)
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("not base64")
	}
	return raw, nil
}

// CheckSAMLResponseShape refuses what a genuine IdP response never has and
// attacks rely on: XML comments or processing instructions (a comment in a
// NameID lets a parser that reads only the first text node see another
// name than the one signed), a DOCTYPE, deep nesting, encrypted
// assertions (Warden asks for none), and anything but exactly one
// Assertion, a child of the Response (signature wrapping moves a signed
// assertion elsewhere and puts a forged one in its place).
func CheckSAMLResponseShape(raw []byte) error {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return fmt.Errorf("not XML: %v", err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != nsSAMLProtocol {
		return errors.New("not a samlp:Response")
	}
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.Directive:
			return errors.New("a DOCTYPE is not allowed")
		case *etree.Comment:
			return errors.New("XML comments are not allowed")
		case *etree.ProcInst:
			if t.Target != "xml" {
				return errors.New("processing instructions are not allowed")
			}
		}
	}
	assertions := 0
	var walk func(e *etree.Element, depth int) error
	walk = func(e *etree.Element, depth int) error {
		if depth > maxSAMLDepth {
			return errors.New("nested too deep")
		}
		if e.NamespaceURI() == nsSAMLAssertion {
			switch e.Tag {
			case "Assertion":
				assertions++
				if e.Parent() != root {
					return errors.New("an Assertion outside the Response's children (signature wrapping?)")
				}
			case "EncryptedAssertion":
				return errors.New("encrypted assertions are not expected")
			}
		}
		for _, t := range e.Child {
			switch t := t.(type) {
			case *etree.Comment:
				return errors.New("XML comments are not allowed")
			case *etree.ProcInst, *etree.Directive:
				return errors.New("processing instructions are not allowed")
			case *etree.Element:
				if err := walk(t, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return err
	}
	if assertions != 1 {
		return fmt.Errorf("%d assertions; exactly one is expected", assertions)
	}
	return nil
}

func marshalXML(v any) ([]byte, error) {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}
