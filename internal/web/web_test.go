package web

import "testing"

// TestLocalPath: sign-in sends the browser back only to a page of this UI.
func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "/web/servers",
		"/web/requests/abc":          "/web/requests/abc",
		"/web/servers?q=env%3Dprod":  "/web/servers?q=env%3Dprod",
		"https://evil.example/web/":  "/web/servers",
		"//evil.example/web/":        "/web/servers",
		"/web//evil.example":         "/web/servers",
		"/web/../v1/users":           "/web/servers",
		"/web/\\evil.example":        "/web/servers",
		"/v1/whoami":                 "/web/servers",
		"javascript:alert(1)":        "/web/servers",
		"/web/me\r\nSet-Cookie: x=1": "/web/servers",
		"/web/requests/x#frag":       "/web/requests/x",
		"/web/servers/":              "/web/servers/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
