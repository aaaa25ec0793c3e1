package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// role builds a role for tests; mutate fills in the spec.
func role(name string, mutate func(s *RoleSpec)) *Role {
	r := &Role{Kind: KindRole, Version: VersionV1, Metadata: Metadata{Name: name}}
	if mutate != nil {
		mutate(&r.Spec)
	}
	return r
}

func allowRole(name string, logins []string, labels Labels) *Role {
	return role(name, func(s *RoleSpec) {
		s.Allow.Logins = logins
		s.Allow.NodeLabels = labels
	})
}

var defaultOptions = EffectiveOptions{MaxSessionTTL: DefaultSessionTTL, FileTransfer: true, PermitPTY: true,
	RecordSession: RecordBestEffort, DisconnectExpiredCert: true, LockMode: LockBestEffort}

func TestDecide(t *testing.T) {
	t.Parallel()
	web := Target{Login: "alice", NodeName: "web1", NodeID: "id-1", Labels: map[string]string{"env": "prod", "region": "us-east-1", "host": "web-12"}}
	with := func(tg Target, login string) Target { tg.Login = login; return tg }
	traits := map[string][]string{"logins": {"alice", "deploy"}, "team": {"payments"}, "env": {"prod"}}
	anyNode := Labels{"*": {"*"}}

	tests := []struct {
		name       string
		roles      []*Role
		traits     map[string][]string
		target     Target
		allowed    bool
		reason     string // exact user-facing reason
		detailHas  string
		wantOption *EffectiveOptions
	}{
		{
			name:      "no roles",
			target:    web,
			reason:    `access to node "web1" is not allowed by your roles`,
			detailHas: "has no roles",
		},
		{
			name:   "nil roles only",
			roles:  []*Role{nil},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:       "wildcard node, literal login",
			roles:      []*Role{allowRole("ops", []string{"alice"}, anyNode)},
			target:     web,
			allowed:    true,
			detailHas:  `role "ops"`,
			wantOption: &defaultOptions,
		},
		{
			name:    "wildcard matches node without labels",
			roles:   []*Role{allowRole("ops", []string{"alice"}, anyNode)},
			target:  Target{Login: "alice", NodeID: "id-9"},
			allowed: true,
		},
		{
			name:      "exact label mismatch",
			roles:     []*Role{allowRole("dev", []string{"alice"}, Labels{"env": {"dev"}})},
			target:    web,
			reason:    `access to node "web1" is not allowed by your roles`,
			detailHas: "no role's allow.node_labels match",
		},
		{
			name:   "missing label key",
			roles:  []*Role{allowRole("dev", []string{"alice"}, Labels{"team": {"*"}})},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:   "all keys must match",
			roles:  []*Role{allowRole("dev", []string{"alice"}, Labels{"env": {"prod"}, "region": {"eu-*"}})},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:    "glob and any value",
			roles:   []*Role{allowRole("dev", []string{"alice"}, Labels{"env": {"*"}, "region": {"us-*"}})},
			target:  web,
			allowed: true,
		},
		{
			name:    "glob character class",
			roles:   []*Role{allowRole("dev", []string{"alice"}, Labels{"host": {"web-1[0-9]"}})},
			target:  web,
			allowed: true,
		},
		{
			name:    "one of several values",
			roles:   []*Role{allowRole("dev", []string{"alice"}, Labels{"env": {"dev", "staging", "prod"}})},
			target:  web,
			allowed: true,
		},
		{
			name:    "regex match",
			roles:   []*Role{allowRole("dev", []string{"alice"}, Labels{"host": {"^web-[0-9]+$"}})},
			target:  web,
			allowed: true,
		},
		{
			name:   "regex is anchored",
			roles:  []*Role{allowRole("dev", []string{"alice"}, Labels{"host": {"^web-[0-9]$"}})},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:   "empty allow labels match nothing",
			roles:  []*Role{allowRole("dev", []string{"alice"}, nil)},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:   "wildcard key needs wildcard value",
			roles:  []*Role{allowRole("dev", []string{"alice"}, Labels{"*": {"prod"}})},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name:      "login not allowed",
			roles:     []*Role{allowRole("ops", []string{"bob"}, anyNode)},
			target:    web,
			reason:    `login "alice" is not allowed on node "web1" by your roles`,
			detailHas: `role "ops" matches the node`,
		},
		{
			name:    "template login from traits",
			roles:   []*Role{allowRole("ops", []string{"{{internal.logins}}"}, anyNode)},
			traits:  traits,
			target:  with(web, "deploy"),
			allowed: true,
		},
		{
			name:    "external template with suffix",
			roles:   []*Role{allowRole("ops", []string{"{{external.team}}-ops"}, anyNode)},
			traits:  traits,
			target:  with(web, "payments-ops"),
			allowed: true,
		},
		{
			name:   "suffix template does not match bare trait",
			roles:  []*Role{allowRole("ops", []string{"{{external.team}}-ops"}, anyNode)},
			traits: traits,
			target: with(web, "payments"),
			reason: `login "payments" is not allowed on node "web1" by your roles`,
		},
		{
			name:   "missing trait expands to nothing",
			roles:  []*Role{allowRole("ops", []string{"{{internal.nosuch}}"}, anyNode)},
			traits: traits,
			target: web,
			reason: `login "alice" is not allowed on node "web1" by your roles`,
		},
		{
			name:   "nil traits",
			roles:  []*Role{allowRole("ops", []string{"{{internal.logins}}"}, anyNode)},
			target: web,
			reason: `login "alice" is not allowed on node "web1" by your roles`,
		},
		{
			name:    "template label value from traits",
			roles:   []*Role{allowRole("ops", []string{"alice"}, Labels{"env": {"{{external.env}}"}})},
			traits:  traits,
			target:  web,
			allowed: true,
		},
		{
			name:   "trait value is never a pattern",
			roles:  []*Role{allowRole("ops", []string{"alice"}, Labels{"env": {"{{external.env}}"}})},
			traits: map[string][]string{"env": {"*"}},
			target: web,
			reason: `access to node "web1" is not allowed by your roles`,
		},
		{
			name: "deny login wins over allow",
			roles: []*Role{
				allowRole("ops", []string{"alice", "root"}, anyNode),
				role("no-root", func(s *RoleSpec) { s.Deny.Logins = []string{"root"} }),
			},
			target:    with(web, "root"),
			reason:    `login "root" is denied on node "web1"`,
			detailHas: `role "no-root": deny.logins`,
		},
		{
			name: "deny login does not affect other logins",
			roles: []*Role{
				allowRole("ops", []string{"alice", "root"}, anyNode),
				role("no-root", func(s *RoleSpec) { s.Deny.Logins = []string{"root"} }),
			},
			target:  web,
			allowed: true,
		},
		{
			name: "deny templated login",
			roles: []*Role{
				allowRole("ops", []string{"alice", "deploy"}, anyNode),
				role("no-deploy", func(s *RoleSpec) { s.Deny.Logins = []string{"{{internal.logins}}"} }),
			},
			traits: map[string][]string{"logins": {"deploy"}},
			target: with(web, "deploy"),
			reason: `login "deploy" is denied on node "web1"`,
		},
		{
			name: "deny labels win, in the same role",
			roles: []*Role{role("ops", func(s *RoleSpec) {
				s.Allow.Logins = []string{"alice"}
				s.Allow.NodeLabels = anyNode
				s.Deny.NodeLabels = Labels{"env": {"prod"}}
			})},
			target:    web,
			reason:    `access to node "web1" is denied`,
			detailHas: `role "ops": deny.node_labels`,
		},
		{
			name: "deny labels by regex",
			roles: []*Role{
				allowRole("ops", []string{"alice"}, anyNode),
				role("no-web", func(s *RoleSpec) { s.Deny.NodeLabels = Labels{"host": {"^web-.*$"}} }),
			},
			target: web,
			reason: `access to node "web1" is denied`,
		},
		{
			name: "deny labels not matching do not deny",
			roles: []*Role{
				allowRole("ops", []string{"alice"}, anyNode),
				role("no-dev", func(s *RoleSpec) { s.Deny.NodeLabels = Labels{"env": {"dev"}} }),
			},
			target:  web,
			allowed: true,
		},
		{
			name: "login from one role and labels from another is denied",
			roles: []*Role{
				allowRole("logins-only", []string{"alice"}, Labels{"env": {"dev"}}),
				allowRole("labels-only", []string{"bob"}, Labels{"env": {"prod"}}),
			},
			target:    web,
			reason:    `login "alice" is not allowed on node "web1" by your roles`,
			detailHas: `role "labels-only" matches the node`,
		},
		{
			name: "second role allows both",
			roles: []*Role{
				allowRole("a", []string{"bob"}, anyNode),
				allowRole("b", []string{"alice"}, Labels{"env": {"prod"}}),
			},
			target:    web,
			allowed:   true,
			detailHas: `role "b"`,
		},
		{
			name:   "node id used when no name",
			roles:  []*Role{allowRole("dev", []string{"alice"}, Labels{"env": {"dev"}})},
			target: Target{Login: "alice", NodeID: "id-7"},
			reason: `access to node "id-7" is not allowed by your roles`,
		},
		{
			name:   "empty login",
			roles:  []*Role{allowRole("ops", []string{"alice"}, anyNode)},
			target: with(web, ""),
			reason: "no login was given",
		},
		{
			name:   "empty node",
			roles:  []*Role{allowRole("ops", []string{"alice"}, anyNode)},
			target: Target{Login: "alice"},
			reason: "no node was given",
		},
		{
			name: "options merged across all roles",
			roles: []*Role{
				role("ops", func(s *RoleSpec) {
					s.Allow.Logins = []string{"alice"}
					s.Allow.NodeLabels = anyNode
					s.Options = RoleOptions{MaxSessionTTL: Duration(4 * time.Hour), PortForwarding: Bool(true), ForwardAgent: Bool(true)}
				}),
				role("strict", func(s *RoleSpec) {
					s.Options = RoleOptions{MaxSessionTTL: Duration(time.Hour), ForwardAgent: Bool(false), PermitPTY: Bool(false)}
				}),
			},
			target:  web,
			allowed: true,
			wantOption: &EffectiveOptions{MaxSessionTTL: time.Hour, PortForwarding: true, FileTransfer: true,
				RecordSession: RecordBestEffort, DisconnectExpiredCert: true, LockMode: LockBestEffort},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range tt.roles {
				if r != nil {
					if err := r.Validate(); err != nil && !strings.Contains(tt.name, "wildcard key") {
						t.Fatalf("test role invalid: %v", err)
					}
				}
			}
			d := Decide(Request{
				Identity: Identity{User: "alice", Roles: nil, Traits: tt.traits},
				Roles:    tt.roles,
				Target:   tt.target,
			})
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v, want %v (reason %q, detail %q)", d.Allowed, tt.allowed, d.Reason, d.Detail)
			}
			if tt.reason != "" && d.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q", d.Reason, tt.reason)
			}
			if d.Reason == "" {
				t.Error("empty Reason")
			}
			if !strings.Contains(d.Detail, tt.detailHas) {
				t.Errorf("Detail = %q, want it to contain %q", d.Detail, tt.detailHas)
			}
			if !d.Allowed && d.Options != (EffectiveOptions{}) {
				t.Errorf("denied decision carries options %+v", d.Options)
			}
			if tt.wantOption != nil {
				if diff := cmp.Diff(*tt.wantOption, d.Options); diff != "" {
					t.Errorf("Options (-want +got):\n%s", diff)
				}
			}
			err := d.Err()
			if tt.allowed != (err == nil) {
				t.Fatalf("Err() = %v with Allowed %v", err, d.Allowed)
			}
			var de *DeniedError
			if err != nil && (!errors.As(err, &de) || de.Error() != d.Reason || de.Detail != d.Detail) {
				t.Errorf("Err() = %#v, want DeniedError with the decision's reason and detail", err)
			}
		})
	}
}

func TestMergeOptions(t *testing.T) {
	t.Parallel()
	opt := func(o RoleOptions) *Role { return role("r", func(s *RoleSpec) { s.Options = o }) }
	tests := []struct {
		name  string
		roles []*Role
		want  EffectiveOptions
	}{
		{"no roles", nil, defaultOptions},
		{"unset options", []*Role{opt(RoleOptions{}), nil}, defaultOptions},
		{"min ttl", []*Role{opt(RoleOptions{MaxSessionTTL: Duration(3 * time.Hour)}), opt(RoleOptions{}), opt(RoleOptions{MaxSessionTTL: Duration(30 * time.Minute)})},
			EffectiveOptions{MaxSessionTTL: 30 * time.Minute, FileTransfer: true, PermitPTY: true}},
		{"ttl above default kept", []*Role{opt(RoleOptions{MaxSessionTTL: Duration(12 * time.Hour)})},
			EffectiveOptions{MaxSessionTTL: 12 * time.Hour, FileTransfer: true, PermitPTY: true}},
		{"true enables default-off", []*Role{opt(RoleOptions{PortForwarding: Bool(true), ForwardAgent: Bool(true)}), opt(RoleOptions{})},
			EffectiveOptions{MaxSessionTTL: DefaultSessionTTL, PortForwarding: true, ForwardAgent: true, FileTransfer: true, PermitPTY: true}},
		{"false wins either order", []*Role{
			opt(RoleOptions{PortForwarding: Bool(true), FileTransfer: Bool(false)}),
			opt(RoleOptions{PortForwarding: Bool(false), FileTransfer: Bool(true), PermitPTY: Bool(false)}),
		}, EffectiveOptions{MaxSessionTTL: DefaultSessionTTL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// These cases are about the SSH permissions; the session
			// controls keep their defaults (tested below).
			want := tt.want
			want.RecordSession, want.DisconnectExpiredCert, want.LockMode = RecordBestEffort, true, LockBestEffort
			if diff := cmp.Diff(want, MergeOptions(tt.roles)); diff != "" {
				t.Errorf("MergeOptions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeSessionControls(t *testing.T) {
	opt := func(o RoleOptions) *Role { return &Role{Spec: RoleSpec{Options: o}} }
	for _, tc := range []struct {
		name       string
		roles      []*Role
		record     string
		input      bool
		disconnect bool
		idle       time.Duration
		lock       string
	}{
		{"defaults", []*Role{opt(RoleOptions{})}, RecordBestEffort, false, true, 0, LockBestEffort},
		{"strict recording wins", []*Role{opt(RoleOptions{RecordSession: RecordOff}), opt(RoleOptions{RecordSession: RecordStrict})}, RecordStrict, false, true, 0, LockBestEffort},
		{"off only when all say off", []*Role{opt(RoleOptions{RecordSession: RecordOff})}, RecordOff, false, true, 0, LockBestEffort},
		{"best_effort beats off", []*Role{opt(RoleOptions{RecordSession: RecordOff}), opt(RoleOptions{RecordSession: RecordBestEffort})}, RecordBestEffort, false, true, 0, LockBestEffort},
		{"input if any role asks", []*Role{opt(RoleOptions{RecordInput: Bool(false)}), opt(RoleOptions{RecordInput: Bool(true)})}, RecordBestEffort, true, true, 0, LockBestEffort},
		{"disconnect stays on if one role wants it", []*Role{opt(RoleOptions{DisconnectExpiredCert: Bool(false)}), opt(RoleOptions{DisconnectExpiredCert: Bool(true)})}, RecordBestEffort, false, true, 0, LockBestEffort},
		{"disconnect off when all say off", []*Role{opt(RoleOptions{DisconnectExpiredCert: Bool(false)}), opt(RoleOptions{})}, RecordBestEffort, false, false, 0, LockBestEffort},
		{"shortest idle timeout", []*Role{opt(RoleOptions{ClientIdleTimeout: Duration(time.Hour)}), opt(RoleOptions{ClientIdleTimeout: Duration(time.Minute)}), opt(RoleOptions{})}, RecordBestEffort, false, true, time.Minute, LockBestEffort},
		{"strict lock mode wins", []*Role{opt(RoleOptions{LockMode: LockBestEffort}), opt(RoleOptions{LockMode: LockStrict})}, RecordBestEffort, false, true, 0, LockStrict},
	} {
		got := MergeOptions(tc.roles)
		if got.RecordSession != tc.record || got.RecordInput != tc.input || got.DisconnectExpiredCert != tc.disconnect ||
			got.ClientIdleTimeout != tc.idle || got.LockMode != tc.lock {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

func TestAllowedLogins(t *testing.T) {
	t.Parallel()
	traits := map[string][]string{"logins": {"alice", "root", "deploy"}}
	roles := []*Role{
		allowRole("a", []string{"{{internal.logins}}", "ubuntu"}, Labels{"*": {"*"}}),
		allowRole("b", []string{"ubuntu", "ec2-user", "{{external.missing}}"}, nil),
		role("c", func(s *RoleSpec) { s.Deny.Logins = []string{"root", "ec2-user"} }),
		nil,
	}
	want := []string{"alice", "deploy", "ubuntu"}
	if diff := cmp.Diff(want, AllowedLogins(roles, traits)); diff != "" {
		t.Errorf("AllowedLogins (-want +got):\n%s", diff)
	}
	if got := AllowedLogins(nil, nil); got == nil || len(got) != 0 {
		t.Errorf("AllowedLogins(nil) = %#v, want empty non-nil", got)
	}
}

func TestNodeAllowed(t *testing.T) {
	t.Parallel()
	prod := Target{NodeName: "db1", Labels: map[string]string{"env": "prod"}}
	dev := Target{NodeName: "dev1", Labels: map[string]string{"env": "dev"}}
	tests := []struct {
		name  string
		roles []*Role
		node  Target
		want  bool
	}{
		{"no roles", nil, prod, false},
		{"allowed ignoring login", []*Role{allowRole("a", nil, Labels{"env": {"prod"}})}, prod, true},
		{"labels mismatch", []*Role{allowRole("a", nil, Labels{"env": {"prod"}})}, dev, false},
		{"deny labels win", []*Role{
			allowRole("a", nil, Labels{"*": {"*"}}),
			role("b", func(s *RoleSpec) { s.Deny.NodeLabels = Labels{"env": {"prod"}} }),
		}, prod, false},
		{"deny labels elsewhere", []*Role{
			allowRole("a", nil, Labels{"*": {"*"}}),
			role("b", func(s *RoleSpec) { s.Deny.NodeLabels = Labels{"env": {"prod"}} }),
		}, dev, true},
		{"deny logins ignored", []*Role{
			allowRole("a", nil, Labels{"*": {"*"}}),
			role("b", func(s *RoleSpec) { s.Deny.Logins = []string{"root"} }),
		}, prod, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := NodeAllowed(tt.roles, nil, tt.node); got != tt.want {
				t.Errorf("NodeAllowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBuiltinRoles(t *testing.T) {
	t.Parallel()
	roles := BuiltinRoles()
	byName := map[string]*Role{}
	for _, r := range roles {
		if err := r.Validate(); err != nil {
			t.Errorf("builtin role invalid: %v", err)
		}
		if r.Metadata.Description == "" {
			t.Errorf("builtin role %q has no description", r.Metadata.Name)
		}
		byName[r.Metadata.Name] = r
	}
	traits := map[string][]string{"logins": {"alice", "root"}}
	node := Target{Login: "root", NodeName: "n1"}
	for _, name := range []string{RoleAdmin, RoleAccess} {
		if d := Decide(Request{Roles: []*Role{byName[name]}, Identity: Identity{Traits: traits}, Target: node}); !d.Allowed {
			t.Errorf("%s: root via traits denied: %s", name, d.Reason)
		}
	}
	if d := Decide(Request{Roles: []*Role{byName[RoleAuditor]}, Identity: Identity{Traits: traits}, Target: node}); d.Allowed {
		t.Error("auditor allowed SSH")
	}
	if err := CheckResource([]*Role{byName[RoleAdmin]}, ResourceCluster, VerbUpdate); err != nil {
		t.Errorf("admin cannot update cluster: %v", err)
	}
	if err := CheckResource([]*Role{byName[RoleAccess]}, ResourceUser, VerbList); err == nil {
		t.Error("access may list users")
	}
	for _, res := range []string{ResourceAudit, ResourceSession, ResourceRecording} {
		for _, verb := range []string{VerbList, VerbRead} {
			if err := CheckResource([]*Role{byName[RoleAuditor]}, res, verb); err != nil {
				t.Errorf("auditor cannot %s %s: %v", verb, res, err)
			}
		}
	}
	if err := CheckResource([]*Role{byName[RoleAuditor]}, ResourceRecording, VerbDelete); err == nil {
		t.Error("auditor may delete recordings")
	}
	// Fresh copies: callers may modify them.
	roles[0].Spec.Allow.Logins[0] = "changed"
	if BuiltinRoles()[0].Spec.Allow.Logins[0] == "changed" {
		t.Error("BuiltinRoles returns shared data")
	}
}

func TestDecideConcurrent(t *testing.T) {
	t.Parallel()
	roles := benchRoles()
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				tg := Target{Login: "alice", NodeName: "n", Labels: map[string]string{"host": fmt.Sprintf("web-%d", i+g)}}
				Decide(Request{Roles: roles, Identity: Identity{Traits: benchTraits}, Target: tg})
				matchers.get(fmt.Sprintf("^x%d-%d$", g, i))
			}
		}()
	}
	for range 8 {
		<-done
	}
}

var benchTraits = map[string][]string{"logins": {"alice", "deploy"}, "team": {"payments"}}

func benchRoles() []*Role {
	return []*Role{
		role("no-root", func(s *RoleSpec) { s.Deny.Logins = []string{"root"} }),
		role("no-pci", func(s *RoleSpec) { s.Deny.NodeLabels = Labels{"compliance": {"^pci-.*$"}} }),
		allowRole("dev", []string{"{{internal.logins}}"}, Labels{"env": {"dev", "staging"}, "host": {"^dev-[0-9]+$"}}),
		allowRole("team", []string{"{{external.team}}-ops"}, Labels{"team": {"^(payments|billing)$"}, "region": {"us-*"}}),
		allowRole("web", []string{"{{internal.logins}}", "ubuntu"}, Labels{"env": {"prod"}, "host": {"^web-[0-9]+$"}, "region": {"us-*", "eu-*"}}),
	}
}

func BenchmarkDecide(b *testing.B) {
	roles := benchRoles()
	req := Request{
		Identity: Identity{User: "alice", Roles: []string{"no-root", "no-pci", "dev", "team", "web"}, Traits: benchTraits},
		Roles:    roles,
		Target: Target{Login: "deploy", NodeName: "web-17", NodeID: "9f1c",
			Labels: map[string]string{"env": "prod", "host": "web-17", "region": "us-west-2", "compliance": "sox", "team": "payments"}},
	}
	if d := Decide(req); !d.Allowed {
		b.Fatalf("benchmark request denied: %s (%s)", d.Reason, d.Detail)
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(req)
	}
}

func BenchmarkDecideDenied(b *testing.B) {
	req := Request{
		Identity: Identity{User: "alice", Traits: benchTraits},
		Roles:    benchRoles(),
		Target:   Target{Login: "mallory", NodeName: "db-1", Labels: map[string]string{"env": "prod", "host": "db-1"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(req)
	}
}
