package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/warden-sh/warden/internal/policy"
	"github.com/warden-sh/warden/internal/wire"
)

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update resources (roles, oidc and saml connectors) from YAML",
		Long: `Create or update resources from a YAML (or JSON) file; several documents may
be separated by ---. Unknown fields and bad values are rejected with the line
and the reason, and nothing is applied unless every document is valid.
Kinds: role, agentless_node (a server reached through its own sshd;
docs/agentless.md), oidc and saml (single sign-on connectors; docs/sso-oidc.md,
docs/sso-saml.md): an oidc connector names the file or environment variable
the auth service reads its client secret from, never the secret itself; a
saml connector names the IdP's metadata (URL or inline XML), and Warden
makes and keeps its signing key itself (sign_requests: true).

Example role:
  kind: role
  version: v1
  metadata:
    name: web-dev
  spec:
    options:
      max_session_ttl: 4h
    allow:
      logins: ['{{internal.logins}}']
      node_labels:
        env: [dev, staging]
    deny:
      logins: [root]`,
		Example: "  warden apply -f role.yaml\n  cat role.yaml | warden apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required (use - for standard input)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(io.LimitReader(g.io.In, 4<<20))
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			data, conns, sconns, err := splitConnectors(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			data, servers, err := splitAgentless(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var roles []*policy.Role
			if len(bytes.TrimSpace(data)) > 0 {
				if roles, err = policy.ParseRoles(data); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
			for _, r := range roles {
				if err := r.Validate(); err != nil {
					return fmt.Errorf("%s: role %q: %w", file, r.Metadata.Name, err)
				}
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, r := range roles {
				if err := c.UpsertRole(cmd.Context(), r); err != nil {
					return err
				}
				textf(g.io.Out, "role %q applied\n", r.Metadata.Name)
			}
			// Connectors after roles: their mappings name roles.
			for _, conn := range conns {
				if err := c.UpsertConnector(cmd.Context(), conn); err != nil {
					return err
				}
				textf(g.io.Out, "oidc connector %q applied\n", conn.Metadata.Name)
			}
			for _, conn := range sconns {
				if err := c.UpsertSAMLConnector(cmd.Context(), conn); err != nil {
					return err
				}
				textf(g.io.Out, "saml connector %q applied (SP metadata for the IdP: https://PROXY/v1/sso/saml/%s/metadata)\n",
					conn.Metadata.Name, conn.Metadata.Name)
			}
			for _, n := range servers {
				if err := c.UpsertAgentlessNode(cmd.Context(), n); err != nil {
					return err
				}
				textf(g.io.Out, "agentless server %q applied\n", n.Metadata.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML or JSON file (- for standard input)")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:       "get roles [NAME]",
		Short:     "Show resources",
		Example:   "  warden get roles\n  warden get roles access -o yaml\n  warden get oidc corp -o yaml\n  warden get saml okta",
		ValidArgs: []string{"roles", "role", "oidc", "saml"},
		Args:      cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "oidc" || args[0] == "connectors" {
				return getConnectors(cmd, g, args[1:], format)
			}
			if args[0] == "saml" {
				return getSAMLConnectors(cmd, g, args[1:], format)
			}
			if args[0] != "roles" && args[0] != "role" {
				return fmt.Errorf("unknown resource kind %q (supported: roles, oidc, saml)", args[0])
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			roles, err := oneOrAll(cmd.Context(), args[1:], c.GetRole, c.ListRoles)
			if err != nil {
				return err
			}
			return renderDocs(g, format, roles, policy.MarshalRole, "ROLE\tLOGINS\tNODE LABELS\tDESCRIPTION", func(r *policy.Role) []string {
				return []string{r.Metadata.Name, strings.Join(r.Spec.Allow.Logins, ","),
					formatMatchers(r.Spec.Allow.NodeLabels), r.Metadata.Description}
			})
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

func formatMatchers(l policy.Labels) string {
	m := make(map[string]string, len(l))
	for k, v := range l {
		m[k] = strings.Join(v, "|")
	}
	return formatLabels(m)
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm KIND/NAME",
		Short:   "Remove a resource",
		Example: "  warden rm role/web-dev",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, ok := strings.Cut(args[0], "/")
			if !ok || name == "" {
				return fmt.Errorf("say what to remove as KIND/NAME, e.g. role/web-dev")
			}
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			switch kind {
			case "role", "roles":
				if err := c.DeleteRole(cmd.Context(), name); err != nil {
					return err
				}
			case "user", "users":
				if err := c.DeleteUser(cmd.Context(), name); err != nil {
					return err
				}
			case "token", "tokens":
				if err := c.DeleteToken(cmd.Context(), name); err != nil {
					return err
				}
			case "lock", "locks":
				if err := c.DeleteLock(cmd.Context(), name); err != nil {
					return err
				}
			case "oidc":
				if err := c.DeleteConnector(cmd.Context(), name); err != nil {
					return err
				}
			case "saml":
				if err := c.DeleteSAMLConnector(cmd.Context(), name); err != nil {
					return err
				}
			default:
				return fmt.Errorf("unknown resource kind %q (supported: role, user, token, lock, oidc, saml)", kind)
			}
			textf(g.io.Out, "%s %q removed\n", kind, name)
			return nil
		},
	}
}

// splitConnectors takes the documents of kind oidc and saml out of a YAML stream
// (each becomes blank lines, so the roles' line numbers stay true) and
// decodes them strictly: an unknown field, such as an inline client_secret,
// is refused.
func splitConnectors(data []byte) ([]byte, []*wire.OIDCConnector, []*wire.SAMLConnector, error) {
	var conns []*wire.OIDCConnector
	var sconns []*wire.SAMLConnector
	rest, err := splitDocs(data, func(kind, doc string, line int) (bool, error) {
		switch kind {
		case wire.KindOIDC:
			var conn wire.OIDCConnector
			if err := yaml.UnmarshalStrict([]byte(doc), &conn); err != nil {
				if strings.Contains(err.Error(), "client_secret") {
					return false, fmt.Errorf("oidc connector (document at line %d): the client secret cannot be part of the connector: "+
						"use client_secret_file or client_secret_env (read by the auth service)", line)
				}
				return false, fmt.Errorf("oidc connector (document at line %d): %v", line, err)
			}
			if err := conn.Validate(); err != nil {
				return false, fmt.Errorf("oidc connector %q (document at line %d): %v", conn.Metadata.Name, line, err)
			}
			conns = append(conns, &conn)
			return true, nil
		case wire.KindSAML:
			var conn wire.SAMLConnector
			if err := yaml.UnmarshalStrict([]byte(doc), &conn); err != nil {
				return false, fmt.Errorf("saml connector (document at line %d): %v", line, err)
			}
			if err := conn.Validate(); err != nil {
				return false, fmt.Errorf("saml connector %q (document at line %d): %v", conn.Metadata.Name, line, err)
			}
			sconns = append(sconns, &conn)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return rest, conns, sconns, nil
}

// splitDocs walks the documents of a YAML stream (split at --- lines):
// take is given each one's kind (blank if it does not parse), text and
// first line number, and reports whether it took it. A document taken
// becomes blank lines, so the line numbers of the others' errors stay
// true. What is left is returned, or nothing if it is only separators and
// something was taken.
func splitDocs(data []byte, take func(kind, doc string, line int) (bool, error)) ([]byte, error) {
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	took := false
	start := 0
	flush := func(end int) error {
		doc := strings.Join(lines[start:end], "")
		var head struct {
			Kind string `json:"kind"`
		}
		if yaml.Unmarshal([]byte(doc), &head) != nil {
			head.Kind = ""
		}
		ok, err := take(head.Kind, doc, start+1)
		if err != nil {
			return err
		}
		if ok {
			took = true
			out.WriteString(strings.Repeat("\n", end-start))
			return nil
		}
		out.WriteString(doc)
		return nil
	}
	for i, l := range lines {
		if strings.TrimRight(l, "\r\n") == "---" {
			if err := flush(i); err != nil {
				return nil, err
			}
			out.WriteString(l)
			start = i + 1
		}
	}
	if err := flush(len(lines)); err != nil {
		return nil, err
	}
	rest := out.String()
	if took && strings.Trim(rest, "-\r\n \t") == "" {
		rest = ""
	}
	return []byte(rest), nil
}

// oneOrAll gets the resource named by args (one name), or lists them all
// (no name).
func oneOrAll[T any](ctx context.Context, args []string, get func(context.Context, string) (T, error),
	list func(context.Context) ([]T, error)) ([]T, error) {
	if len(args) == 1 {
		one, err := get(ctx, args[0])
		if err != nil {
			return nil, err
		}
		return []T{one}, nil
	}
	return list(ctx)
}

// getConnectors shows OIDC connectors: their secret is never here, only
// where auth reads it.
func getConnectors(cmd *cobra.Command, g *globals, args []string, format string) error {
	c, err := g.adminClient()
	if err != nil {
		return err
	}
	defer c.Close()
	conns, err := oneOrAll(cmd.Context(), args, c.GetConnector, c.ListConnectors)
	if err != nil {
		return err
	}
	return renderDocs(g, format, conns, marshalDoc, "OIDC CONNECTOR\tISSUER\tCLIENT ID\tSECRET FROM", func(conn *wire.OIDCConnector) []string {
		secret := "file " + conn.Spec.ClientSecretFile
		if conn.Spec.ClientSecretEnv != "" {
			secret = "env " + conn.Spec.ClientSecretEnv
		}
		return []string{conn.Metadata.Name, conn.Spec.IssuerURL, conn.Spec.ClientID, secret}
	})
}

// getSAMLConnectors shows SAML connectors: never their signing key,
// which auth keeps apart from them.
func getSAMLConnectors(cmd *cobra.Command, g *globals, args []string, format string) error {
	c, err := g.adminClient()
	if err != nil {
		return err
	}
	defer c.Close()
	conns, err := oneOrAll(cmd.Context(), args, c.GetSAMLConnector, c.ListSAMLConnectors)
	if err != nil {
		return err
	}
	return renderDocs(g, format, conns, marshalDoc, "SAML CONNECTOR\tIDP METADATA\tSP METADATA (on the proxy)\tSIGNED REQUESTS", func(conn *wire.SAMLConnector) []string {
		idp := conn.Spec.IdPMetadataURL
		if idp == "" {
			idp = "(inline XML)"
		}
		signed := "no"
		if conn.Spec.SignRequests {
			signed = "yes"
		}
		return []string{conn.Metadata.Name, idp, "/v1/sso/saml/" + conn.Metadata.Name + "/metadata", signed}
	})
}

// renderDocs writes items as yaml documents (--- between them) or one JSON
// object each (format json), or else as a table.
func renderDocs[T any](g *globals, format string, items []T, marshal func(T, string) ([]byte, error),
	header string, row func(T) []string) error {
	switch format {
	case "yaml", "json":
		for i, it := range items {
			if i > 0 && format == "yaml" {
				textf(g.io.Out, "---\n")
			}
			b, err := marshal(it, format)
			if err != nil {
				return err
			}
			g.io.Out.Write(b)
		}
		return nil
	case "", "text":
	default:
		return fmt.Errorf("unknown output format %q (use text, json or yaml)", format)
	}
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = row(it)
	}
	return writeTable(g.io.Out, header, rows)
}

// marshalDoc encodes one resource as a yaml document or an indented JSON
// object ending in a newline.
func marshalDoc[T any](v T, format string) ([]byte, error) {
	if format == "yaml" {
		return yaml.Marshal(v)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}
