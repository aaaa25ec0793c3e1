package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, math.NaN()},
		{"one", []float64{7}, 90, 7},
		{"median odd", []float64{3, 1, 2}, 50, 2},
		{"median even", []float64{4, 1, 3, 2}, 50, 2.5},
		{"p90 interpolates", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9.1},
		{"min", []float64{5, 4}, 0, 4},
		{"max", []float64{5, 4}, 100, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Percentile(tt.xs, tt.p)
			if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-9) {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
		})
	}
	xs := []float64{3, 1, 2}
	Median(xs)
	if xs[0] != 3 {
		t.Fatal("Percentile sorted its input in place")
	}
	if got := Millis([]time.Duration{1500 * time.Microsecond}); got[0] != 1.5 {
		t.Fatalf("Millis = %v", got)
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		want string
	}{
		{"ratio at most, pass", Row{Warden: 105, Baseline: 100, Goal: Goal{RatioAtMost, 1.10}}, "pass"},
		{"ratio at most, fail", Row{Warden: 111, Baseline: 100, Goal: Goal{RatioAtMost, 1.10}}, "FAIL"},
		{"ratio at least, pass", Row{Warden: 90, Baseline: 100, Goal: Goal{RatioAtLeast, 0.9}}, "pass"},
		{"ratio at least, fail", Row{Warden: 84, Baseline: 100, Goal: Goal{RatioAtLeast, 0.85}}, "FAIL"},
		{"ratio without baseline", Row{Warden: 84, Baseline: math.NaN(), Goal: Goal{RatioAtLeast, 0.85}}, "n/a"},
		{"absolute at most", Row{Warden: 61, Baseline: math.NaN(), Goal: Goal{AtMost, 60}}, "FAIL"},
		{"absolute at least", Row{Warden: 2500, Baseline: math.NaN(), Goal: Goal{AtLeast, 2000}}, "pass"},
		{"info", Row{Warden: 1, Baseline: math.NaN()}, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.row.Verdict(); got != tt.want {
				t.Fatalf("Verdict() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSummaryPrint(t *testing.T) {
	var s Summary
	s.Add(Row{Metric: "connect p50", Warden: 110, Baseline: 100, Unit: "ms", Goal: Goal{RatioAtMost, 1.10}, Note: "kex x"},
		Row{Metric: "certs", Warden: 12345.6, Baseline: math.NaN(), Unit: "certs/s", Goal: Goal{AtLeast, 2000}},
		Row{Metric: "rss", Warden: 70, Baseline: math.NaN(), Unit: "MiB", Goal: Goal{AtMost, 60}})
	var b strings.Builder
	s.Print(&b)
	out := b.String()
	for _, want := range []string{"METRIC", "110 ms", "1.10x", "pass", "12,346 certs/s", ">= 2,000 certs/s", "FAIL", "Notes:", "connect p50: kex x"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if s.Failed() != 1 {
		t.Fatalf("Failed() = %d, want 1", s.Failed())
	}
	if got := groupThousands("-1234567"); got != "-1,234,567" {
		t.Fatalf("groupThousands = %q", got)
	}
}
