package policy

import (
	"slices"
	"testing"
)

func kubeRoles(t *testing.T, src string) []*Role {
	t.Helper()
	roles, err := ParseRoles([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return roles
}

const kubeRoleYAML = `
kind: role
metadata: {name: kube-dev}
spec:
  allow:
    kubernetes_labels: {env: dev}
    kubernetes_groups: [developers, "{{external.teams}}"]
    kubernetes_users: ["{{internal.kube_user}}"]
    kubernetes_resources:
      - {kind: pods, namespace: "team-*", verbs: [get, list, watch]}
      - {kind: "pods/exec", namespace: team-a}
  deny:
    kubernetes_resources:
      - {kind: pods, namespace: team-a, name: "secret-*"}
---
kind: role
metadata: {name: kube-member}
spec:
  allow:
    kubernetes_labels: {"*": "*"}
    kubernetes_groups: ["system:masters"]
---
kind: role
metadata: {name: no-prod}
spec:
  deny:
    kubernetes_labels: {env: prod}
    kubernetes_groups: ["system:masters"]
`

func TestDecideKube(t *testing.T) {
	roles := kubeRoles(t, kubeRoleYAML)
	dev, member, noProd := roles[0], roles[1], roles[2]
	id := Identity{User: "alice", Traits: map[string][]string{"teams": {"blue"}, "kube_user": {"alice@corp"}}}
	devCluster := KubeCluster{Name: "dev1", Labels: map[string]string{"env": "dev"}}
	prodCluster := KubeCluster{Name: "prod1", Labels: map[string]string{"env": "prod"}}
	cases := []struct {
		name    string
		roles   []*Role
		cluster KubeCluster
		res     KubeResource
		allowed bool
		user    string
		groups  []string
	}{
		{"no roles", nil, devCluster, KubeResource{Verb: "list", Kind: "pods", Namespace: "team-a"}, false, "", nil},
		{"list pods in team ns", []*Role{dev}, devCluster, KubeResource{Verb: "list", Kind: "pods", Namespace: "team-a"}, true, "alice@corp", []string{"blue", "developers"}},
		{"delete pods refused", []*Role{dev}, devCluster, KubeResource{Verb: "delete", Kind: "pods", Namespace: "team-a", Name: "x"}, false, "", nil},
		{"other namespace refused", []*Role{dev}, devCluster, KubeResource{Verb: "get", Kind: "pods", Namespace: "kube-system", Name: "x"}, false, "", nil},
		{"subresource needs its own rule", []*Role{dev}, devCluster, KubeResource{Verb: "create", Kind: "pods/exec", Namespace: "team-a", Name: "x"}, true, "alice@corp", []string{"blue", "developers"}},
		{"pods rule does not cover pods/log", []*Role{dev}, devCluster, KubeResource{Verb: "get", Kind: "pods/log", Namespace: "team-a", Name: "x"}, false, "", nil},
		{"deny resource wins", []*Role{dev, member}, devCluster, KubeResource{Verb: "get", Kind: "pods", Namespace: "team-a", Name: "secret-1"}, false, "", nil},
		{"cluster labels", []*Role{dev}, prodCluster, KubeResource{Verb: "list", Kind: "pods", Namespace: "team-a"}, false, "", nil},
		{"discovery needs only the cluster", []*Role{dev}, devCluster, KubeResource{Verb: "get"}, true, "alice@corp", []string{"blue", "developers"}},
		{"member: nodes, user is warden's", []*Role{member}, devCluster, KubeResource{Verb: "list", Kind: "nodes"}, true, "alice", []string{"system:masters"}},
		{"deny labels win", []*Role{member, noProd}, prodCluster, KubeResource{Verb: "list", Kind: "nodes"}, false, "", nil},
		{"deny groups removes masters", []*Role{member, noProd}, devCluster, KubeResource{Verb: "list", Kind: "nodes"}, false, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideKube(KubeRequest{Identity: id, Roles: tc.roles, Cluster: tc.cluster, Resource: tc.res})
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed = %v (%s; %s), want %v", d.Allowed, d.Reason, d.Detail, tc.allowed)
			}
			if !d.Allowed {
				if d.Reason == "" || d.Err() == nil || d.User != "" || d.Groups != nil {
					t.Fatalf("refusal without reason or with identities: %+v", d)
				}
				return
			}
			if d.User != tc.user || !slices.Equal(d.Groups, tc.groups) {
				t.Fatalf("impersonate %q %v, want %q %v", d.User, d.Groups, tc.user, tc.groups)
			}
		})
	}
	if !KubeClusterAllowed([]*Role{dev}, id.Traits, devCluster) || KubeClusterAllowed([]*Role{dev}, id.Traits, prodCluster) ||
		KubeClusterAllowed([]*Role{member, noProd}, id.Traits, prodCluster) {
		t.Fatal("KubeClusterAllowed")
	}
}

func TestKubeRoleValidation(t *testing.T) {
	for _, bad := range []string{
		"kind: role\nmetadata: {name: r}\nspec: {allow: {kubernetes_resources: [{namespace: x}]}}",
		"kind: role\nmetadata: {name: r}\nspec: {allow: {kubernetes_resources: [{kind: pods, verbs: [exec]}]}}",
		"kind: role\nmetadata: {name: r}\nspec: {allow: {kubernetes_resources: [{kind: \"[\"}]}}",
		"kind: role\nmetadata: {name: r}\nspec: {allow: {kubernetes_labels: {env: []}}}",
		"kind: role\nmetadata: {name: r}\nspec: {allow: {kubernetes_groups: [\"\"]}}",
	} {
		if _, err := ParseRoles([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
