package proxy

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
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
		got, err := ParseTarget(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseTarget(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"web1", "web1:22", "env=prod:1", "[::1]:22", "a:b:c", "=", "x=y=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
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
