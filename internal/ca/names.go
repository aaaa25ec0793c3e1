package ca

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/warden-sh/warden/internal/identity"
)

// Limits on what a certificate may carry. Issuing refuses more; decoding
// refuses more, so a certificate from elsewhere cannot make a node allocate
// or loop without bound.
const (
	MaxExtensionLen   = 64 << 10 // bytes in one Warden extension value
	MaxRoles          = 256
	MaxPrincipals     = 256
	MaxRequestIDs     = 64
	MaxTraitKeys      = 64
	MaxTraitValues    = 256 // per key
	MaxTraitValueLen  = 1024
	maxNameLen        = 128
	maxRoleNameLen    = 64
	maxHostnameLen    = 253
	maxSourceAddrs    = 64
	maxSourceAddrsLen = 4096
)

func validateClusterName(name string) error {
	if name == "" {
		return errors.New("cluster name is empty")
	}
	if len(name) > maxHostnameLen || !isToken(name, "._-") || name[0] == '-' || name[0] == '.' {
		return fmt.Errorf("cluster name %q: want 1-253 letters, digits, '.', '_' or '-', not starting with '-' or '.'", name)
	}
	return nil
}

// isToken reports whether s is non-empty ASCII letters, digits and extra.
func isToken(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validateRoleName matches policy's role names: 1-64 letters, digits, '.',
// '_' and '-', starting with a letter or digit.
func validateRoleName(r string) error {
	if len(r) > maxRoleNameLen || !isToken(r, "._-") || r[0] == '.' || r[0] == '_' || r[0] == '-' {
		return fmt.Errorf("invalid role name %q", truncate(r))
	}
	return nil
}

func validateRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return fmt.Errorf("%d roles, at most %d allowed", len(roles), MaxRoles)
	}
	for _, r := range roles {
		if err := validateRoleName(r); err != nil {
			return err
		}
	}
	return nil
}

func validateTraitKey(k string) error {
	if len(k) > maxNameLen || !isToken(k, "._-:/@") {
		return fmt.Errorf("invalid trait name %q", truncate(k))
	}
	return nil
}

func validateTraits(traits map[string][]string) error {
	if len(traits) > MaxTraitKeys {
		return fmt.Errorf("%d traits, at most %d allowed", len(traits), MaxTraitKeys)
	}
	for k, vs := range traits {
		if err := validateTraitKey(k); err != nil {
			return err
		}
		if len(vs) > MaxTraitValues {
			return fmt.Errorf("trait %q has %d values, at most %d allowed", k, len(vs), MaxTraitValues)
		}
		for _, v := range vs {
			if err := validateTraitValue(v); err != nil {
				return fmt.Errorf("trait %q: %w", k, err)
			}
		}
	}
	return nil
}

func validateTraitValue(v string) error {
	if len(v) > MaxTraitValueLen {
		return fmt.Errorf("value of %d bytes, at most %d allowed", len(v), MaxTraitValueLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("value %q has a control character", truncate(v))
		}
	}
	return nil
}

func validateRequestIDs(ids []string) error {
	if len(ids) > MaxRequestIDs {
		return fmt.Errorf("%d access request IDs, at most %d allowed", len(ids), MaxRequestIDs)
	}
	for _, id := range ids {
		if err := validateID(id); err != nil {
			return fmt.Errorf("access request ID: %w", err)
		}
	}
	return nil
}

// validateID checks IDs such as access request IDs, host IDs and node IDs
// (UUIDs in practice): 1-128 letters, digits, '.', '_', '-'.
func validateID(id string) error {
	if len(id) > maxNameLen || !isToken(id, "._-") || id[0] == '-' {
		return fmt.Errorf("invalid ID %q", truncate(id))
	}
	return nil
}

func validateUserPrincipals(ps []string) error {
	if len(ps) == 0 {
		return errors.New("no principals")
	}
	if len(ps) > MaxPrincipals {
		return fmt.Errorf("%d principals, at most %d allowed", len(ps), MaxPrincipals)
	}
	for _, p := range ps {
		if rest, ok := strings.CutPrefix(p, InternalPrincipalPrefix); ok {
			if err := identity.ValidateUsername(rest); err != nil {
				return fmt.Errorf("internal principal: %w", err)
			}
			continue
		}
		if err := identity.ValidateLogin(p); err != nil {
			return fmt.Errorf("principal: %w", err)
		}
	}
	return nil
}

// InternalPrincipalPrefix starts a principal that is never an OS login (no
// valid login starts with '-'). Every user certificate carries one so that
// its principal list is never empty: OpenSSH reads an empty list as "any".
const InternalPrincipalPrefix = "-warden-user-"

// checkInternalPrincipals refuses an internal principal naming a user other
// than the certificate's own.
func checkInternalPrincipals(username string, ps []string) error {
	for _, p := range ps {
		if rest, ok := strings.CutPrefix(p, InternalPrincipalPrefix); ok && rest != username {
			return fmt.Errorf("internal principal %q does not match user %q", truncate(p), truncate(username))
		}
	}
	return nil
}

// validateHostPrincipal accepts host names, host IDs and IP addresses.
func validateHostPrincipal(p string) error {
	if len(p) > maxHostnameLen || !isToken(p, "._-:") || p[0] == '-' || p[0] == '.' {
		return fmt.Errorf("invalid host principal %q", truncate(p))
	}
	return nil
}

func validateHostPrincipals(ps []string) error {
	if len(ps) == 0 {
		return errors.New("no principals")
	}
	if len(ps) > MaxPrincipals {
		return fmt.Errorf("%d principals, at most %d allowed", len(ps), MaxPrincipals)
	}
	for _, p := range ps {
		if err := validateHostPrincipal(p); err != nil {
			return err
		}
	}
	return nil
}

// normalizeSourceAddress checks an OpenSSH source-address list: comma
// separated IP addresses or CIDR prefixes.
func normalizeSourceAddress(s string) (string, error) {
	if len(s) > maxSourceAddrsLen {
		return "", errors.New("source address list too long")
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxSourceAddrs {
		return "", fmt.Errorf("%d source addresses, at most %d allowed", len(parts), maxSourceAddrs)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if strings.Contains(p, "/") {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return "", fmt.Errorf("source address %q: %w", p, err)
			}
			out = append(out, pfx.Masked().String())
			continue
		}
		addr, err := netip.ParseAddr(p)
		if err != nil || addr.Zone() != "" {
			return "", fmt.Errorf("source address %q is not an IP address or CIDR prefix", p)
		}
		out = append(out, addr.String())
	}
	return strings.Join(out, ","), nil
}

// truncate shortens hostile strings before they go into error messages.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
