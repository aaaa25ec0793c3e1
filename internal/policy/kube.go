package policy

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// KubernetesResource allows (or, under deny, refuses) Verbs on Kubernetes
// objects. Kind is the resource as Kubernetes RBAC names it ("pods",
// "deployments", "nodes", a subresource as "pods/exec"); Namespace and
// Name are globs ("*" also matches a cluster-scoped object's empty
// namespace and a list's empty name). Verbs are Kubernetes verbs (get,
// list, watch, create, update, patch, delete, deletecollection) or "*".
type KubernetesResource struct {
	Kind      string  `json:"kind" yaml:"kind"`
	Namespace string  `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Name      string  `json:"name,omitempty" yaml:"name,omitempty"`
	Verbs     Strings `json:"verbs,omitempty" yaml:"verbs,omitempty"`
}

// KubeVerbs are the verbs kubernetes_resources may name (besides "*").
var KubeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// KubeCluster is a Kubernetes cluster as a kube agent reports it.
type KubeCluster struct {
	Name   string
	Labels map[string]string
}

// KubeResource is what one Kubernetes API request touches. A request
// to a non-resource URL (/version, /api, /apis, /openapi/...: discovery)
// has an empty Kind.
type KubeResource struct {
	Verb      string
	Kind      string
	Namespace string
	Name      string
}

// KubeRequest is one Kubernetes access decision to make.
type KubeRequest struct {
	Identity Identity
	Roles    []*Role
	Cluster  KubeCluster
	Resource KubeResource
}

// KubeDecision is the outcome of DecideKube: when allowed, whom the agent
// impersonates in the cluster.
type KubeDecision struct {
	Allowed bool
	// Reason is short and safe to show to the user.
	Reason string
	// Detail names the role that decided, for the audit log.
	Detail string
	// User and Groups are set only when Allowed.
	User   string
	Groups []string
}

// Err returns nil for an allowed decision and a *DeniedError otherwise.
func (d KubeDecision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Reason: d.Reason, Detail: d.Detail}
}

// KubeClusterAllowed reports whether some role's allow.kubernetes_labels
// select the cluster and no role's deny.kubernetes_labels do.
func KubeClusterAllowed(roles []*Role, traits map[string][]string, c KubeCluster) bool {
	allowed := false
	for _, r := range roles {
		if r == nil {
			continue
		}
		if matchLabels(r.Spec.Deny.KubernetesLabels, traits, c.Labels) {
			return false
		}
		if matchLabels(r.Spec.Allow.KubernetesLabels, traits, c.Labels) {
			allowed = true
		}
	}
	return allowed
}

// DecideKube decides a Kubernetes API request the way Decide decides SSH:
// deny wins (a role whose deny.kubernetes_labels select the cluster, or
// whose deny.kubernetes_resources match the request, refuses it, and so
// do deny.kubernetes_groups and deny.kubernetes_users for those
// identities). Otherwise the roles whose allow.kubernetes_labels select
// the cluster give the groups and users to impersonate, and one of them
// must allow the resource (a role without kubernetes_resources allows
// every resource: the cluster's own RBAC for the impersonated groups is
// then the limit). The impersonated user is the role's kubernetes_users
// value (the first in order if several), else the Warden user name.
func DecideKube(req KubeRequest) KubeDecision {
	c, res := req.Cluster, req.Resource
	traits := req.Identity.Traits
	notAllowed := KubeDecision{Reason: fmt.Sprintf("access to kubernetes cluster %q is not allowed by your roles", c.Name)}
	if !hasRole(req.Roles) {
		notAllowed.Detail = fmt.Sprintf("user %q has no roles", req.Identity.User)
		return notAllowed
	}
	for _, r := range req.Roles {
		if r == nil {
			continue
		}
		if matchLabels(r.Spec.Deny.KubernetesLabels, traits, c.Labels) {
			return KubeDecision{Reason: fmt.Sprintf("access to kubernetes cluster %q is denied", c.Name),
				Detail: fmt.Sprintf("role %q: deny.kubernetes_labels match cluster %q", r.Metadata.Name, c.Name)}
		}
		if res.Kind != "" && matchKubeResources(r.Spec.Deny.KubernetesResources, res) {
			return KubeDecision{Reason: fmt.Sprintf("%s is denied on kubernetes cluster %q", describeKube(res), c.Name),
				Detail: fmt.Sprintf("role %q: deny.kubernetes_resources match %s", r.Metadata.Name, describeKube(res))}
		}
	}
	var groups, users []string
	var deniedGroups, deniedUsers []string
	resourceAllowed, clusterAllowed := res.Kind == "", false
	allowedBy := ""
	for _, r := range req.Roles {
		if r == nil {
			continue
		}
		deniedGroups = append(deniedGroups, ExpandTemplates(r.Spec.Deny.KubernetesGroups, traits)...)
		deniedUsers = append(deniedUsers, ExpandTemplates(r.Spec.Deny.KubernetesUsers, traits)...)
		if !matchLabels(r.Spec.Allow.KubernetesLabels, traits, c.Labels) {
			continue
		}
		clusterAllowed = true
		groups = append(groups, ExpandTemplates(r.Spec.Allow.KubernetesGroups, traits)...)
		users = append(users, ExpandTemplates(r.Spec.Allow.KubernetesUsers, traits)...)
		if !resourceAllowed && (len(r.Spec.Allow.KubernetesResources) == 0 || matchKubeResources(r.Spec.Allow.KubernetesResources, res)) {
			resourceAllowed = true
			allowedBy = r.Metadata.Name
		}
	}
	names := roleNames(req.Roles)
	if !clusterAllowed {
		notAllowed.Detail = fmt.Sprintf("no role's allow.kubernetes_labels match cluster %q (roles: %s)", c.Name, names)
		return notAllowed
	}
	if !resourceAllowed {
		return KubeDecision{Reason: fmt.Sprintf("%s is not allowed on kubernetes cluster %q by your roles", describeKube(res), c.Name),
			Detail: fmt.Sprintf("no role's allow.kubernetes_resources match %s (roles: %s)", describeKube(res), names)}
	}
	groups = without(uniqSorted(groups), deniedGroups)
	users = without(uniqSorted(users), deniedUsers)
	if len(groups) == 0 && len(users) == 0 {
		return KubeDecision{Reason: fmt.Sprintf("your roles give no kubernetes groups or users on cluster %q", c.Name),
			Detail: fmt.Sprintf("roles allowing cluster %q have no kubernetes_groups or kubernetes_users left after deny (roles: %s)", c.Name, names)}
	}
	user := req.Identity.User
	if len(users) > 0 {
		user = users[0]
	}
	return KubeDecision{Allowed: true, User: user, Groups: groups,
		Reason: fmt.Sprintf("allowed on kubernetes cluster %q", c.Name),
		Detail: fmt.Sprintf("allowed by role %q", allowedBy)}
}

func describeKube(r KubeResource) string {
	var b strings.Builder
	b.WriteString(r.Verb)
	b.WriteString(" ")
	b.WriteString(r.Kind)
	if r.Name != "" {
		b.WriteString(" ")
		b.WriteString(r.Name)
	}
	if r.Namespace != "" {
		b.WriteString(" in namespace ")
		b.WriteString(r.Namespace)
	}
	return b.String()
}

func matchKubeResources(rules []KubernetesResource, res KubeResource) bool {
	for _, k := range rules {
		if globMatch(k.Kind, res.Kind) && globMatch(orStar(k.Namespace), res.Namespace) &&
			globMatch(orStar(k.Name), res.Name) && (len(k.Verbs) == 0 || slices.Contains(k.Verbs, Wildcard) || slices.Contains(k.Verbs, res.Verb)) {
			return true
		}
	}
	return false
}

func orStar(s string) string {
	if s == "" {
		return Wildcard
	}
	return s
}

// globMatch matches a glob; "*" also matches the empty string and a
// subresource ("pods/exec" under "*"), but "pods" does not match
// "pods/exec".
func globMatch(pattern, v string) bool {
	if pattern == Wildcard {
		return true
	}
	ok, err := path.Match(pattern, v)
	return err == nil && ok
}

func uniqSorted(v []string) []string {
	sort.Strings(v)
	return slices.Compact(v)
}

func without(v, drop []string) []string {
	return slices.DeleteFunc(v, func(s string) bool { return slices.Contains(drop, s) })
}

func (c *Conditions) validateKube() error {
	for k, v := range c.KubernetesLabels {
		if err := validateLabel(k, v); err != nil {
			return fmt.Errorf("kubernetes_labels[%q]: %w", k, err)
		}
	}
	for i, g := range append(slices.Clone(c.KubernetesGroups), c.KubernetesUsers...) {
		if strings.TrimSpace(g) == "" || strings.ContainsAny(g, "\r\n\x00") {
			return fmt.Errorf("kubernetes_groups/users[%d]: empty or invalid value %q", i, g)
		}
	}
	for i, r := range c.KubernetesResources {
		if r.Kind == "" {
			return fmt.Errorf("kubernetes_resources[%d]: kind is required (e.g. \"pods\" or \"*\")", i)
		}
		for _, p := range []string{r.Kind, r.Namespace, r.Name} {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("kubernetes_resources[%d]: invalid glob %q", i, p)
			}
		}
		for _, v := range r.Verbs {
			if v != Wildcard && !slices.Contains(KubeVerbs, v) {
				return fmt.Errorf("kubernetes_resources[%d]: unknown verb %q (want one of %s or \"*\")", i, v, strings.Join(KubeVerbs, ", "))
			}
		}
	}
	return nil
}
