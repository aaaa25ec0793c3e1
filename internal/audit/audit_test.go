package audit

import "testing"

func TestEffectiveLimit(t *testing.T) {
	tests := []struct{ in, want int }{
		{-1, DefaultLimit}, {0, DefaultLimit}, {1, 1}, {DefaultLimit + 1, DefaultLimit + 1},
		{MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit}, {1 << 40, MaxLimit},
	}
	for _, tc := range tests {
		if got := (Query{Limit: tc.in}).EffectiveLimit(); got != tc.want {
			t.Errorf("EffectiveLimit of Limit %d = %d, want %d", tc.in, got, tc.want)
		}
	}
}
