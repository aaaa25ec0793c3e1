package web

import "strings"

// diffLine is one line of a line diff: Op is ' ' (in both), '-' (only in
// the old text) or '+' (only in the new).
type diffLine struct {
	Op   string
	Text string
}

// maxDiffCells bounds the work of a diff (old lines × new lines); larger
// texts are shown as all removed, then all added.
const maxDiffCells = 1 << 20

// diffLines is a line diff of a and b (longest common subsequence).
func diffLines(a, b string) []diffLine {
	al, bl := splitLines(a), splitLines(b)
	n, m := len(al), len(bl)
	if n*m > maxDiffCells {
		out := make([]diffLine, 0, n+m)
		for _, l := range al {
			out = append(out, diffLine{"-", l})
		}
		for _, l := range bl {
			out = append(out, diffLine{"+", l})
		}
		return out
	}
	// lcs[i][j] is the length of the LCS of al[i:] and bl[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case al[i] == bl[j]:
			out = append(out, diffLine{" ", al[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", al[i]})
			i++
		default:
			out = append(out, diffLine{"+", bl[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{"-", al[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{"+", bl[j]})
	}
	return out
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
