package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const devRoleYAML = `kind: role
version: v1
metadata:
  name: dev
  description: developers
spec:
  options:
    max_session_ttl: 4h
    port_forwarding: true
  allow:
    logins: ['{{internal.logins}}', ubuntu]
    node_labels:
      env: [dev, staging]
      region: 'us-*'
      host: '^web-[0-9]+$'
    rules:
      - resources: [session, recording]
        verbs: read
  deny:
    logins: root
`

func devRole() *Role {
	return &Role{
		Kind:     KindRole,
		Version:  VersionV1,
		Metadata: Metadata{Name: "dev", Description: "developers"},
		Spec: RoleSpec{
			Options: RoleOptions{MaxSessionTTL: Duration(4 * time.Hour), PortForwarding: Bool(true)},
			Allow: Conditions{
				Logins: []string{"{{internal.logins}}", "ubuntu"},
				NodeLabels: Labels{
					"env":    {"dev", "staging"},
					"region": {"us-*"},
					"host":   {"^web-[0-9]+$"},
				},
				Rules: []Rule{{Resources: Strings{"session", "recording"}, Verbs: Strings{"read"}}},
			},
			Deny: Conditions{Logins: []string{"root"}},
		},
	}
}

func TestParseRoles(t *testing.T) {
	t.Parallel()
	minimal := func(name string) *Role {
		return &Role{Kind: KindRole, Version: VersionV1, Metadata: Metadata{Name: name}}
	}
	tests := []struct {
		name string
		in   string
		want []*Role
	}{
		{"full yaml", devRoleYAML, []*Role{devRole()}},
		{"version defaults to v1", "kind: role\nmetadata: {name: a}\n", []*Role{minimal("a")}},
		{
			"multi document with empty docs",
			"---\nkind: role\nmetadata:\n  name: a\n---\n---\n# just a comment\n---\nkind: role\nmetadata:\n  name: b\n",
			[]*Role{minimal("a"), minimal("b")},
		},
		{
			"top-level yaml list",
			"- kind: role\n  metadata: {name: a}\n- kind: role\n  metadata: {name: b}\n",
			[]*Role{minimal("a"), minimal("b")},
		},
		{
			"json object",
			`{"kind":"role","version":"v1","metadata":{"name":"dev","description":"developers"},
			  "spec":{"options":{"max_session_ttl":"4h","port_forwarding":true},
			  "allow":{"logins":["{{internal.logins}}","ubuntu"],
			    "node_labels":{"env":["dev","staging"],"region":"us-*","host":"^web-[0-9]+$"},
			    "rules":[{"resources":["session","recording"],"verbs":"read"}]},
			  "deny":{"logins":["root"]}}}`,
			[]*Role{devRole()},
		},
		{
			"json array and escapes yaml would reject",
			"[\n\t{\"kind\": \"role\", \"metadata\": {\"name\": \"a\", \"description\": \"x\\/y \\u00e9\"}},\n\t{\"kind\": \"role\", \"metadata\": {\"name\": \"b\"}}\n]",
			[]*Role{
				{Kind: KindRole, Version: VersionV1, Metadata: Metadata{Name: "a", Description: "x/y é"}},
				minimal("b"),
			},
		},
		{
			"concatenated json objects",
			`{"kind":"role","metadata":{"name":"a"}} {"kind":"role","metadata":{"name":"b"}}`,
			[]*Role{minimal("a"), minimal("b")},
		},
		{
			"numbers as strings and anchors",
			"kind: role\nmetadata: {name: a}\nspec:\n  allow:\n    logins: &l [1001]\n    node_labels: {rack: 7}\n  deny:\n    logins: *l\n",
			[]*Role{{Kind: KindRole, Version: VersionV1, Metadata: Metadata{Name: "a"}, Spec: RoleSpec{
				Allow: Conditions{Logins: []string{"1001"}, NodeLabels: Labels{"rack": {"7"}}},
				Deny:  Conditions{Logins: []string{"1001"}},
			}}},
		},
		{
			"null sections",
			"kind: role\nmetadata:\n  name: a\n  description:\nspec:\n  allow:\n  deny:\n",
			[]*Role{minimal("a")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRoles([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseRoles: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRoles mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRolesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"unknown field with line", devRoleYAML[:strings.Index(devRoleYAML, "    logins: [")] +
			"    logns: [x]\n", `line 11: unknown field "logns" in allow`},
		{"unknown top-level field", "kind: role\nmetadata: {name: a}\nspce: {}\n", `line 3: unknown field "spce" in role`},
		{"unknown field in rule", "kind: role\nmetadata: {name: a}\nspec:\n  allow:\n    rules:\n      - resources: [user]\n        verbs: [list]\n        verb: read\n",
			`line 8: unknown field "verb" in rules[0]`},
		{"duplicate field", "kind: role\nkind: role\nmetadata: {name: a}\n", `line 2: duplicate field "kind" in role`},
		{"bool where string", "kind: role\nmetadata: {name: true}\n", "line 2: name: expected a string, got a boolean"},
		{"string where bool", "kind: role\nmetadata: {name: a}\nspec:\n  options:\n    permit_pty: yes\n", "line 5: permit_pty: expected true or false"},
		{"mapping where list", "kind: role\nmetadata: {name: a}\nspec:\n  allow:\n    logins: {a: b}\n", "line 5: logins: expected a string or a list of strings, got a mapping"},
		{"bad duration", "kind: role\nmetadata: {name: a}\nspec:\n  options:\n    max_session_ttl: 8x\n", `line 5: max_session_ttl: invalid duration "8x"`},
		{"duration without unit", "kind: role\nmetadata: {name: a}\nspec:\n  options:\n    max_session_ttl: 8\n", "line 5: max_session_ttl: duration 8 needs a unit"},
		{"labels not a mapping", "kind: role\nmetadata: {name: a}\nspec:\n  allow:\n    node_labels: [a]\n", "line 5: node_labels: expected a mapping"},
		{"label value mapping", "kind: role\nmetadata: {name: a}\nspec:\n  allow:\n    node_labels:\n      env: {a: b}\n", `line 6: node_labels["env"]: expected a string or a list of strings`},
		{"role not a mapping", "just a string\n", "role: expected a mapping"},
		{"syntax error", "kind: role\n  metadata: : :\n", "parse roles: yaml: line"},
		{"empty input", "", "no roles found"},
		{"only separators", "---\n---\n", "no roles found"},
		{"validation error has line", "kind: role\nmetadata: {name: a}\n---\nkind: rol\nmetadata: {name: b}\n", `line 4: role "b": kind: must be "role"`},
		{"json unknown field line", "{\n  \"kind\": \"role\",\n  \"metadata\": {\"name\": \"a\"},\n  \"spec\": {\"allow\": {\n    \"logns\": [\"x\"]}}\n}",
			`line 5: unknown field "logns" in allow`},
		{"json wrong type", "{\"kind\": \"role\", \"metadata\": {\"name\": 5, \"description\": [1]}}", "line 1: description: expected a string, got a list"},
		{"duplicate role", "kind: role\nmetadata: {name: a}\n---\nkind: role\nmetadata: {name: a}\n", `line 4: role "a" is defined twice`},
		{"json syntax", "{\"kind\": \"role\",\n \"metadata\": }", "invalid JSON"},
		{"json truncated", `{"kind": "role"`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseRoles([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseRoles succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestMarshalRoleRoundTrip(t *testing.T) {
	t.Parallel()
	roles := append(BuiltinRoles(), devRole())
	for _, r := range roles {
		for _, format := range []string{"yaml", "json"} {
			t.Run(r.Metadata.Name+"/"+format, func(t *testing.T) {
				t.Parallel()
				out, err := MarshalRole(r, format)
				if err != nil {
					t.Fatalf("MarshalRole: %v", err)
				}
				got, err := ParseRoles(out)
				if err != nil {
					t.Fatalf("ParseRoles(MarshalRole()): %v\n%s", err, out)
				}
				if diff := cmp.Diff([]*Role{r}, got); diff != "" {
					t.Errorf("round trip mismatch (-want +got):\n%s\n%s", diff, out)
				}
			})
		}
	}
}

func TestMarshalRoleYAMLShape(t *testing.T) {
	t.Parallel()
	r := &Role{Kind: KindRole, Version: VersionV1, Metadata: Metadata{Name: "a"},
		Spec: RoleSpec{Options: RoleOptions{MaxSessionTTL: Duration(90 * time.Minute)}}}
	out, err := MarshalRole(r, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "kind: role\nversion: v1\nmetadata:\n  name: a\nspec:\n  options:\n    max_session_ttl: 1h30m0s\n"
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("yaml (-want +got):\n%s", diff)
	}
	js, err := MarshalRole(r, "json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "allow") || !strings.Contains(string(js), `"max_session_ttl": "1h30m0s"`) {
		t.Errorf("json output unexpected:\n%s", js)
	}
	if _, err := MarshalRole(r, "toml"); err == nil {
		t.Error("MarshalRole(toml) succeeded")
	}
	if _, err := MarshalRole(nil, "json"); err == nil {
		t.Error("MarshalRole(nil) succeeded")
	}
}

func TestStringsAndDurationJSON(t *testing.T) {
	t.Parallel()
	var c struct {
		A Strings  `json:"a"`
		B Strings  `json:"b"`
		D Duration `json:"d"`
	}
	if err := jsonUnmarshal(`{"a":"x","b":["y","z"],"d":"30m"}`, &c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Strings{"x"}, c.A); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff(Strings{"y", "z"}, c.B); diff != "" {
		t.Error(diff)
	}
	if c.D != Duration(30*time.Minute) {
		t.Errorf("D = %v", c.D)
	}
	for _, bad := range []string{`{"a":1}`, `{"d":5}`, `{"d":"soon"}`} {
		if err := jsonUnmarshal(bad, &c); err == nil {
			t.Errorf("unmarshal %s succeeded", bad)
		}
	}
}

func TestStringsAndDurationYAML(t *testing.T) {
	t.Parallel()
	var c struct {
		A Strings  `yaml:"a"`
		B Strings  `yaml:"b"`
		D Duration `yaml:"d"`
	}
	if err := yamlUnmarshal("a: x\nb: [y, z]\nd: 8h\n", &c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Strings{"x"}, c.A); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff(Strings{"y", "z"}, c.B); diff != "" {
		t.Error(diff)
	}
	if c.D != Duration(8*time.Hour) {
		t.Errorf("D = %v", c.D)
	}
	for _, bad := range []string{"a: {x: 1}\n", "d: [1]\n", "d: later\n"} {
		if err := yamlUnmarshal(bad, &c); err == nil {
			t.Errorf("unmarshal %q succeeded", bad)
		}
	}
}

func TestParseRequestAndSessionOptions(t *testing.T) {
	roles, err := ParseRoles([]byte(`
kind: role
metadata: {name: contractor}
spec:
  options:
    record_session: strict
    record_input: true
    client_idle_timeout: 15m
    lock_mode: strict
    disconnect_expired_cert: false
  allow:
    request:
      roles: [prod-*]
      max_duration: 2h
      reason_required: true
      thresholds: {approve: 2, deny: 1}
      suggested_reviewers: [alice, bob]
    review_requests: {roles: [dev-*]}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := roles[0]
	o := r.Spec.Options
	if o.RecordSession != RecordStrict || o.RecordInput == nil || !*o.RecordInput || time.Duration(o.ClientIdleTimeout) != 15*time.Minute ||
		o.LockMode != LockStrict || o.DisconnectExpiredCert == nil || *o.DisconnectExpiredCert {
		t.Fatalf("options %+v", o)
	}
	req := r.Spec.Allow.Request
	if req == nil || req.Roles[0] != "prod-*" || time.Duration(req.MaxDuration) != 2*time.Hour || !req.ReasonRequired ||
		req.Thresholds.Approve != 2 || req.Thresholds.Deny != 1 || len(req.SuggestedReviewers) != 2 {
		t.Fatalf("request %+v", req)
	}
	if rv := r.Spec.Allow.ReviewRequests; rv == nil || rv.Roles[0] != "dev-*" {
		t.Fatalf("review %+v", rv)
	}
	for _, bad := range []string{
		"options: {record_session: sometimes}",
		"allow: {request: {thresholds: {approve: many}}}",
		"allow: {request: {thresholds: {approve: 11}}}",
		"allow: {request: {rolez: [x]}}",
	} {
		if _, err := ParseRoles([]byte("kind: role\nmetadata: {name: x}\nspec:\n  " + bad + "\n")); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
