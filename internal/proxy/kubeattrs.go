package proxy

import (
	"errors"
	"net/url"
	"strings"

	"github.com/warden-sh/warden/internal/policy"
)

// maxKubePath bounds the path of a Kubernetes API request.
const maxKubePath = 8 << 10

// kubeStreamSubresources are the pod subresources that open a stream;
// Kubernetes authorizes them as "create" whatever the HTTP method (a
// WebSocket upgrade is a GET).
var kubeStreamSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true}

// parseKubeRequest tells what a Kubernetes API request touches from its
// method, path (below the cluster's prefix) and query, as the API
// server's own request info does: /api/v1/..., /apis/GROUP/VERSION/...,
// namespaced or not, a name, a subresource. Anything else (/version,
// /api, /apis, /openapi/v2, /healthz) is a non-resource request: empty
// Kind. The verb is the Kubernetes verb.
func parseKubeRequest(method, path string, query url.Values) (policy.KubeResource, error) {
	if len(path) > maxKubePath {
		return policy.KubeResource{}, errors.New("request path too long")
	}
	if strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") || strings.Contains(path, "/./") || strings.Contains(path, "//") {
		return policy.KubeResource{}, errors.New("request path is not clean")
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var res policy.KubeResource
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		// A non-resource URL: its verb is the method, as the API server
		// says it.
		switch method {
		case "GET", "HEAD":
			res.Verb = "get"
		case "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
			res.Verb = strings.ToLower(method)
		default:
			return policy.KubeResource{}, errors.New("unsupported method " + method)
		}
		return res, nil
	}
	if len(parts) == 0 || parts[0] == "" {
		if method != "GET" && method != "HEAD" {
			return policy.KubeResource{}, errors.New("unsupported method " + method)
		}
		res.Verb = "get"
		return res, nil
	}
	watch := false
	if parts[0] == "watch" {
		watch, parts = true, parts[1:]
		if len(parts) == 0 {
			return policy.KubeResource{}, errors.New("watch of nothing")
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		res.Namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	res.Kind = parts[0]
	if len(parts) > 1 {
		res.Name = parts[1]
	}
	if res.Kind == "namespaces" && res.Name != "" {
		// A namespace is cluster-scoped; its own namespace is itself.
		res.Namespace = res.Name
	}
	sub := ""
	if len(parts) > 2 {
		sub = strings.Join(parts[2:], "/")
		res.Kind += "/" + sub
	}
	if res.Kind == "" || res.Name == "" && len(parts) > 1 {
		return policy.KubeResource{}, errors.New("malformed resource path")
	}
	switch method {
	case "GET", "HEAD":
		switch {
		case watch || query.Get("watch") == "true" || query.Get("watch") == "1":
			res.Verb = "watch"
		case res.Name == "":
			res.Verb = "list"
		default:
			res.Verb = "get"
		}
	case "POST":
		res.Verb = "create"
	case "PUT":
		res.Verb = "update"
	case "PATCH":
		res.Verb = "patch"
	case "DELETE":
		res.Verb = "delete"
		if res.Name == "" {
			res.Verb = "deletecollection"
		}
	default:
		return policy.KubeResource{}, errors.New("unsupported method " + method)
	}
	if kubeStreamSubresources[sub] {
		res.Verb = "create"
	}
	return res, nil
}
