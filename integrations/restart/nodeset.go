package restart

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxNodesetHosts bounds how many names ExpandNodeset produces, so a typo
// such as host[1-99999999] fails instead of eating memory.
const MaxNodesetHosts = 100000

// ExpandNodeset expands a ClusterShell folded node set, the form cumin
// prints host lists in, into host names.
//
// Supported, as ClusterShell writes them: comma-separated elements
// ("a1.b,c[2-3].d"); bracket groups of comma-separated numbers and ranges
// ("[1-3,5]"), with a step ("[1-9/2]") and zero padding taken from the
// width of the range's start ("[08-11]" gives 08 09 10 11); several bracket
// groups in one element, expanded as a product with the last group varying
// fastest ("r[1-2]c[1-2]" gives r1c1 r1c2 r2c1 r2c2). Spaces around
// elements are ignored. Not supported, and reported as an error: node set
// operators (! & ^), @groups, nested or unbalanced brackets, empty
// elements, descending ranges, more than MaxNodesetHosts names. Duplicates
// are dropped, keeping the first; order is otherwise as written (cumin
// prints sorted sets).
func ExpandNodeset(s string) ([]string, error) {
	elems, err := splitNodeset(s)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range elems {
		names, err := expandElement(e, MaxNodesetHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("node set %q: %w", truncate(s, 80), err)
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// splitNodeset splits at commas outside brackets.
func splitNodeset(s string) ([]string, error) {
	var elems []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
			if depth > 1 {
				return nil, fmt.Errorf("node set %q: nested '[' at offset %d", truncate(s, 80), i)
			}
		case ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("node set %q: unbalanced ']' at offset %d", truncate(s, 80), i)
			}
		case ',':
			if depth == 0 {
				elems = append(elems, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("node set %q: unclosed '['", truncate(s, 80))
	}
	elems = append(elems, s[start:])
	for i, e := range elems {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("node set %q: empty element", truncate(s, 80))
		}
		elems[i] = e
	}
	return elems, nil
}

// expandElement expands one element such as "registry[2003-2004].codfw.wmnet".
func expandElement(e string, budget int) ([]string, error) {
	// Split into literal parts and bracket groups: lits[0] grp[0] lits[1] ...
	var lits []string
	var groups [][]string
	for {
		i := strings.IndexByte(e, '[')
		if i < 0 {
			if strings.IndexByte(e, ']') >= 0 {
				return nil, errors.New("unbalanced ']'")
			}
			lits = append(lits, e)
			break
		}
		j := strings.IndexByte(e[i:], ']')
		if j < 0 {
			return nil, errors.New("unclosed '['")
		}
		j += i
		if strings.IndexByte(e[:i], ']') >= 0 {
			return nil, errors.New("unbalanced ']'")
		}
		lits = append(lits, e[:i])
		g, err := expandRangeSet(e[i+1:j], budget)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
		e = e[j+1:]
	}
	for _, l := range lits {
		if err := checkLiteral(l); err != nil {
			return nil, err
		}
	}
	total := 1
	for _, g := range groups {
		if total > budget/len(g) {
			return nil, fmt.Errorf("expands to more than %d names", MaxNodesetHosts)
		}
		total *= len(g)
	}
	if total > budget {
		return nil, fmt.Errorf("expands to more than %d names", MaxNodesetHosts)
	}
	names := make([]string, 0, total)
	idx := make([]int, len(groups))
	var b strings.Builder
	for {
		b.Reset()
		for k, l := range lits {
			b.WriteString(l)
			if k < len(groups) {
				b.WriteString(groups[k][idx[k]])
			}
		}
		names = append(names, b.String())
		// Advance the last group fastest.
		k := len(groups) - 1
		for ; k >= 0; k-- {
			idx[k]++
			if idx[k] < len(groups[k]) {
				break
			}
			idx[k] = 0
		}
		if k < 0 {
			return names, nil
		}
	}
}

// checkLiteral refuses characters with a meaning in ClusterShell's node set
// syntax that ExpandNodeset does not implement, and whitespace or control
// characters inside a name.
func checkLiteral(l string) error {
	for _, r := range l {
		switch {
		case r == '!' || r == '&' || r == '^' || r == '@':
			return fmt.Errorf("node set operator or group %q is not supported", r)
		case r <= ' ' || r == 0x7f:
			return fmt.Errorf("whitespace or control character %q inside a name", r)
		}
	}
	return nil
}

// expandRangeSet expands the inside of one bracket group, e.g. "1-3,05-07/2".
func expandRangeSet(s string, budget int) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty '[]'")
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty range in [%s]", s)
		}
		rng, stepStr, hasStep := strings.Cut(part, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		if !isRange {
			hi = lo
		}
		if !isDigits(lo) || !isDigits(hi) {
			return nil, fmt.Errorf("range %q in [%s]: want N, N-M or N-M/S", part, s)
		}
		step := uint64(1)
		if hasStep {
			if !isRange || !isDigits(stepStr) {
				return nil, fmt.Errorf("range %q in [%s]: bad step", part, s)
			}
			var err error
			step, err = strconv.ParseUint(stepStr, 10, 32)
			if err != nil || step == 0 {
				return nil, fmt.Errorf("range %q in [%s]: bad step", part, s)
			}
		}
		a, errA := strconv.ParseUint(lo, 10, 32)
		z, errZ := strconv.ParseUint(hi, 10, 32)
		if errA != nil || errZ != nil {
			return nil, fmt.Errorf("range %q in [%s]: number too large", part, s)
		}
		if a > z {
			return nil, fmt.Errorf("range %q in [%s]: start after end", part, s)
		}
		if (z-a)/step+1 > uint64(budget-len(out)) {
			return nil, fmt.Errorf("expands to more than %d names", MaxNodesetHosts)
		}
		// ClusterShell pads to the width of the start when it has a leading
		// zero ("08-11"); "0" alone is not padding.
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		}
		for v := a; v <= z; v += step {
			n := strconv.FormatUint(v, 10)
			if len(n) < width {
				n = strings.Repeat("0", width-len(n)) + n
			}
			out = append(out, n)
			if z-v < step {
				break
			}
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
