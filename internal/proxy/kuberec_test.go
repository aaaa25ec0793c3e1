package proxy

import (
	"testing"

	"github.com/warden-sh/warden/internal/policy"
)

func TestKubeExitCode(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   int
	}{
		{`{"metadata":{},"status":"Success"}`, 0},
		{`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode",` +
			`"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`, 3},
		{`{"status":"Failure","message":"error executing command in container: signal: killed"}`, -1},
		{`{"status":"Failure","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}`, -1},
		{``, -1},
		{`not json`, -1},
	} {
		if got := kubeExitCode([]byte(tc.status)); got != tc.want {
			t.Errorf("kubeExitCode(%s) = %d, want %d", tc.status, got, tc.want)
		}
	}
}

func TestRecordMode(t *testing.T) {
	for in, want := range map[string]string{"": policy.RecordBestEffort, policy.RecordBestEffort: policy.RecordBestEffort,
		policy.RecordOff: policy.RecordOff, policy.RecordStrict: policy.RecordStrict, "bogus": policy.RecordStrict} {
		if got := recordMode(in); got != want {
			t.Errorf("recordMode(%q) = %q, want %q", in, got, want)
		}
	}
}
