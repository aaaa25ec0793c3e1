package target

import (
	"strings"
	"testing"

	"github.com/warden-sh/warden/internal/wire"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "web1", want: Target{Node: "web1"}},
		{in: "web1:22", want: Target{Node: "web1", Port: 22}},
		{in: "6f1c-id", want: Target{Node: "6f1c-id"}},
		{in: "env=prod", want: Target{LabelKey: "env", LabelValue: "prod"}},
		{in: "env=prod:3022", want: Target{LabelKey: "env", LabelValue: "prod", Port: 3022}},
		{in: "[::1]:22", want: Target{Node: "::1", Port: 22}},
		{in: "::1", want: Target{Node: "::1"}},
		{in: "[:]:0", wantErr: true},
		{in: "a:b:c", wantErr: true},
		{in: "", wantErr: true},
		{in: ":22", wantErr: true},
		{in: "web1:x", wantErr: true},
		{in: "web1:99999", wantErr: true},
		{in: "a=b=c", wantErr: true},
		{in: "=v", wantErr: true},
		{in: "k=", wantErr: true},
		{in: "dev@web1", wantErr: true},
		{in: "web 1", wantErr: true},
		{in: "web\x001", wantErr: true},
		{in: strings.Repeat("a", 600), wantErr: true},
	} {
		got, err := ParseHost(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseHost(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("ParseHost(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"web1", "web1:22", "env=prod:1", "[::1]:22", "a:b:c", "=", "x=y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseHost(s)
		if err != nil {
			return
		}
		if len(s) > maxTargetLen || tg.String() == "" || tg.Port < 0 || tg.Port > 65535 {
			t.Fatalf("accepted bad target %q -> %+v", s, tg)
		}
		if (tg.Node == "") == (tg.LabelKey == "") {
			t.Fatalf("exactly one of node and label must be set: %q -> %+v", s, tg)
		}
	})
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "web1", want: Target{Node: "web1"}},
		{in: "dev@web1", want: Target{Login: "dev", Node: "web1"}},
		{in: "dev@env=prod", want: Target{Login: "dev", LabelKey: "env", LabelValue: "prod"}},
		{in: "dev@env=prod:22", want: Target{Login: "dev", LabelKey: "env", LabelValue: "prod", Port: 22}},
		{in: "user@corp@web1", want: Target{Login: "user@corp", Node: "web1"}},
		{in: `DOMAIN\user@web1`, want: Target{Login: `DOMAIN\user`, Node: "web1"}},
		{in: "@web1", wantErr: true},
		{in: "-oProxyCommand=x@web1", wantErr: true},
		{in: "de v@web1", wantErr: true},
		{in: "dev@", wantErr: true},
		{in: "dev@a=b=c", wantErr: true},
		{in: "dev\x1b@web1", wantErr: true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("Parse(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	nodes := []wire.Node{
		{ID: "id-1", Name: "web1", Hostname: "web1.example", Labels: map[string]string{"env": "prod"}},
		{ID: "id-2", Name: "web2", Labels: map[string]string{"env": "prod", "team": "b"}},
		{ID: "id-3", Name: "web1", Labels: map[string]string{"env": "dev"}},
	}
	ids := func(ns []wire.Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, n.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct{ in, want string }{
		{"web1", "id-1,id-3"},
		{"web1.example", "id-1"},
		{"id-3", "id-3"},
		{"env=prod", "id-1,id-2"},
		{"team=b", "id-2"},
		{"env=staging", ""},
		{"nope", ""},
	} {
		tg, err := ParseHost(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(tg.Match(nodes)); got != tc.want {
			t.Errorf("%q matches %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParse: a target with a login comes from the command line; whatever
// Parse accepts has a safe login and a host part ParseHost reads back.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"dev@web1", "dev@env=prod", "a@b@c:22", "@x", "-x@y", "dev@[::1]:22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		if strings.Contains(s, "@") != (tg.Login != "") {
			t.Fatalf("login of %q is %q", s, tg.Login)
		}
		if strings.HasPrefix(tg.Login, "-") || strings.ContainsAny(tg.Login, " \x00\n\r/:") {
			t.Fatalf("accepted login %q", tg.Login)
		}
		back, err := ParseHost(tg.String())
		if err != nil || back.String() != tg.String() {
			t.Fatalf("%q -> %q does not parse back: %v", s, tg.String(), err)
		}
	})
}
