package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"text/tabwriter"
)

// GoalKind says how a row is judged.
type GoalKind int

// Goal kinds: a ratio to the baseline, or an absolute value.
const (
	// NoGoal rows are information only.
	NoGoal GoalKind = iota
	// RatioAtMost passes when warden/baseline <= Goal.Value.
	RatioAtMost
	// RatioAtLeast passes when warden/baseline >= Goal.Value.
	RatioAtLeast
	// AtMost passes when warden <= Goal.Value.
	AtMost
	// AtLeast passes when warden >= Goal.Value.
	AtLeast
)

// Goal is the target a row is judged against.
type Goal struct {
	Kind  GoalKind
	Value float64
}

// Row is one line of the summary.
type Row struct {
	Metric string
	// Warden is the measured value; Baseline is the same metric for the
	// baseline (stock sshd) in the same run, or NaN if there is none.
	Warden, Baseline float64
	Unit             string
	Goal             Goal
	// Note is printed after the table (e.g. the negotiated cipher).
	Note string
}

// Ratio is Warden/Baseline, or NaN without a baseline.
func (r Row) Ratio() float64 {
	if math.IsNaN(r.Baseline) || r.Baseline == 0 {
		return math.NaN()
	}
	return r.Warden / r.Baseline
}

// Verdict is "pass", "FAIL", "info", or "n/a" when the value is missing.
func (r Row) Verdict() string {
	v := r.Warden
	switch r.Goal.Kind {
	case RatioAtMost, RatioAtLeast:
		v = r.Ratio()
	case NoGoal:
		return "info"
	}
	if math.IsNaN(v) {
		return "n/a"
	}
	ok := false
	switch r.Goal.Kind {
	case RatioAtMost, AtMost:
		ok = v <= r.Goal.Value
	case RatioAtLeast, AtLeast:
		ok = v >= r.Goal.Value
	}
	if ok {
		return "pass"
	}
	return "FAIL"
}

func (r Row) goalString() string {
	switch r.Goal.Kind {
	case RatioAtMost:
		return fmt.Sprintf("<= %.2fx", r.Goal.Value)
	case RatioAtLeast:
		return fmt.Sprintf(">= %.2fx", r.Goal.Value)
	case AtMost:
		return "<= " + formatValue(r.Goal.Value, r.Unit)
	case AtLeast:
		return ">= " + formatValue(r.Goal.Value, r.Unit)
	}
	return "-"
}

func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	var s string
	switch {
	case math.Abs(v) >= 1000:
		s = groupThousands(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 100:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// groupThousands puts commas into an integer string.
func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Summary collects rows from all benchmarks of a run.
type Summary struct {
	mu   sync.Mutex
	rows []Row
}

// Add appends rows.
func (s *Summary) Add(rows ...Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, rows...)
}

// Rows returns a copy of the rows.
func (s *Summary) Rows() []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Row(nil), s.rows...)
}

// Failed counts rows that missed their goal.
func (s *Summary) Failed() int {
	n := 0
	for _, r := range s.Rows() {
		if r.Verdict() == "FAIL" {
			n++
		}
	}
	return n
}

// Print writes the table: metric, warden, baseline, ratio, goal, verdict,
// then the notes.
func (s *Summary) Print(w io.Writer) {
	rows := s.Rows()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tWARDEN\tBASELINE (sshd unless noted)\tRATIO\tGOAL\tRESULT")
	for _, r := range rows {
		ratio := "-"
		if x := r.Ratio(); !math.IsNaN(x) {
			ratio = fmt.Sprintf("%.2fx", x)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Metric, formatValue(r.Warden, r.Unit),
			formatValue(r.Baseline, r.Unit), ratio, r.goalString(), r.Verdict())
	}
	tw.Flush()
	first := true
	for _, r := range rows {
		if r.Note == "" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nNotes:")
			first = false
		}
		fmt.Fprintf(w, "  %s: %s\n", r.Metric, r.Note)
	}
}
