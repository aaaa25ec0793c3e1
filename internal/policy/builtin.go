package policy

// Names of the built-in roles.
const (
	RoleAdmin   = "admin"
	RoleAccess  = "access"
	RoleAuditor = "auditor"
)

// BuiltinRoles returns fresh copies of the roles every cluster starts with:
//   - admin: every login in the user's "logins" trait on every node, and every
//     admin operation; port and agent forwarding allowed.
//   - access: every login in the user's "logins" trait on every node; nothing
//     is denied here, administrators decide through the user's traits.
//   - auditor: no SSH access; may list and read the audit log, sessions and
//     recordings.
func BuiltinRoles() []*Role {
	allNodes := Labels{Wildcard: {Wildcard}}
	return []*Role{
		{
			Kind:    KindRole,
			Version: VersionV1,
			Metadata: Metadata{
				Name:        RoleAdmin,
				Description: "Full administrative access: all nodes with the user's logins, every admin operation, and joining any session.",
			},
			Spec: RoleSpec{
				Options: RoleOptions{PortForwarding: Bool(true), ForwardAgent: Bool(true)},
				Allow: Conditions{
					Logins:       []string{"{{internal.logins}}"},
					NodeLabels:   allNodes,
					Rules:        []Rule{{Resources: Strings{Wildcard}, Verbs: Strings{Wildcard}}},
					JoinSessions: []JoinSessions{{Roles: Strings{Wildcard}, Modes: Strings{JoinObserver, JoinPeer}}},
				},
			},
		},
		{
			Kind:    KindRole,
			Version: VersionV1,
			Metadata: Metadata{
				Name:        RoleAccess,
				Description: "SSH access to all nodes with the logins in the user's traits.",
			},
			Spec: RoleSpec{
				Allow: Conditions{
					Logins:     []string{"{{internal.logins}}"},
					NodeLabels: Labels{Wildcard: {Wildcard}},
				},
			},
		},
		{
			Kind:    KindRole,
			Version: VersionV1,
			Metadata: Metadata{
				Name:        RoleAuditor,
				Description: "Read-only access to the audit log, sessions and recordings; no SSH access.",
			},
			Spec: RoleSpec{
				Allow: Conditions{
					Rules: []Rule{{
						Resources: Strings{ResourceAudit, ResourceSession, ResourceRecording},
						Verbs:     Strings{VerbList, VerbRead},
					}},
				},
			},
		},
	}
}
