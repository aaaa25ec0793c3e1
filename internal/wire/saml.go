package wire

import (
	"errors"
	"fmt"
	"strings"
)

// KindSAML is the kind of a SAML connector resource.
const KindSAML = "saml"

// SAMLConnector is a SAML 2.0 single sign-on connector (Warden is the
// service provider, logins are SP-initiated), applied with `warden apply
// -f`. It holds no secret: when requests are signed, the signing key is
// made and kept by the auth service apart from the connector, and shows in
// no export, `warden get` output or audit event.
type SAMLConnector struct {
	Kind     string            `json:"kind"`
	Version  string            `json:"version,omitempty"`
	Metadata ConnectorMetadata `json:"metadata"`
	Spec     SAMLConnectorSpec `json:"spec"`
}

// SAMLConnectorSpec is what a SAML connector says.
type SAMLConnectorSpec struct {
	// IdPMetadataURL is where the IdP publishes its metadata (https, or
	// http on a loopback address only); IdPMetadataXML is that metadata
	// inline. Exactly one.
	IdPMetadataURL string `json:"idp_metadata_url,omitempty"`
	IdPMetadataXML string `json:"idp_metadata_xml,omitempty"`
	// EntityID is Warden's entity ID as registered with the IdP (default:
	// https://PROXY/v1/sso/saml/NAME/metadata, the SP metadata's URL).
	EntityID string `json:"entity_id,omitempty"`
	// ACSURL is where the IdP posts its response (default
	// https://PROXY/v1/sso/saml/NAME/acs).
	ACSURL string `json:"acs_url,omitempty"`
	// UsernameAttribute names the attribute (Name or FriendlyName) whose
	// value becomes the Warden user name; empty: the subject's NameID. The
	// value must be a valid user name, else the login is refused.
	UsernameAttribute string `json:"username_attribute,omitempty"`
	// UsernameDomain, when set, is the e-mail domain the user name's value
	// must end with (@DOMAIN), taken off: ann@example.com becomes ann;
	// another domain is refused.
	UsernameDomain string `json:"username_domain,omitempty"`
	// AttributesToRoles maps attributes to roles; a login whose
	// attributes match none is refused.
	AttributesToRoles []AttributeMapping `json:"attributes_to_roles"`
	// Traits maps a trait name to the attribute it is taken from; role
	// templates use it as {{external.NAME}}.
	Traits map[string]string `json:"traits,omitempty"`
	// SignRequests makes Warden sign its authentication requests with a
	// key it makes and keeps (its certificate is in the SP metadata).
	SignRequests bool `json:"sign_requests,omitempty"`
}

// AttributeMapping grants Roles when the attribute Attribute (its Name or
// FriendlyName) has a value matching Value: a glob (* and ?), or a
// regular expression ^...$.
type AttributeMapping struct {
	Attribute string   `json:"attribute"`
	Value     string   `json:"value"`
	Roles     []string `json:"roles"`
}

// MaxSAMLMetadata bounds IdP metadata, inline or fetched.
const MaxSAMLMetadata = 1 << 20

// Validate checks a SAML connector: auth before it stores it, the CLI
// before it applies anything.
func (c *SAMLConnector) Validate() error {
	if c.Kind != KindSAML {
		return fmt.Errorf("kind must be %q", KindSAML)
	}
	if !connectorName.MatchString(c.Metadata.Name) {
		return fmt.Errorf("metadata.name %q: want letters, digits, '.', '_' or '-'", c.Metadata.Name)
	}
	sp := c.Spec
	switch {
	case (sp.IdPMetadataURL == "") == (sp.IdPMetadataXML == ""):
		return errors.New("exactly one of idp_metadata_url and idp_metadata_xml is required")
	case sp.IdPMetadataURL != "":
		if err := checkIDPURL("idp_metadata_url", sp.IdPMetadataURL); err != nil {
			return err
		}
	case len(sp.IdPMetadataXML) > MaxSAMLMetadata:
		return fmt.Errorf("idp_metadata_xml: more than %d bytes", MaxSAMLMetadata)
	case !strings.Contains(sp.IdPMetadataXML, "EntityDescriptor"):
		return errors.New("idp_metadata_xml: not SAML metadata (no EntityDescriptor)")
	}
	if sp.EntityID != "" && strings.TrimSpace(sp.EntityID) != sp.EntityID {
		return errors.New("entity_id: no leading or trailing spaces")
	}
	if sp.ACSURL != "" {
		if err := checkIDPURL("acs_url", sp.ACSURL); err != nil {
			return err
		}
	}
	if err := checkUsernameDomain(sp.UsernameDomain); err != nil {
		return err
	}
	if len(sp.AttributesToRoles) == 0 {
		return errors.New("attributes_to_roles: at least one mapping is required")
	}
	for i, m := range sp.AttributesToRoles {
		if m.Attribute == "" || m.Value == "" || len(m.Roles) == 0 {
			return fmt.Errorf("attributes_to_roles[%d]: attribute, value and roles are required", i)
		}
		if _, err := ClaimMatcher(m.Value); err != nil {
			return fmt.Errorf("attributes_to_roles[%d]: value %q: %v", i, m.Value, err)
		}
	}
	for name, attr := range sp.Traits {
		if name == "" || attr == "" {
			return errors.New("traits: names and attributes must not be empty")
		}
	}
	return nil
}
