package v1alpha1

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
)

// CompilePattern compiles the pattern of a template parameter or a step result: an RE2 regular
// expression that the whole value must match (anchored as ^(?:pattern)$).
func CompilePattern(pattern string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf("pattern %q is not a regular expression (RE2 syntax): %s", clip(pattern, 64),
			strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

// CheckResultPatterns checks a step's results against the patterns its declarations give. The
// error names the results and patterns, never the values.
func CheckResultPatterns(declared []ResultSpec, values map[string]string) error {
	var problems []string
	for _, d := range declared {
		v, ok := values[d.Name]
		if d.Pattern == "" || !ok {
			continue
		}
		re, err := CompilePattern(d.Pattern)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("result %s: %v", d.Name, err))
		case !re.MatchString(v):
			problems = append(problems, fmt.Sprintf("result %s does not match its pattern %q", d.Name, clip(d.Pattern, 64)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// PatternMayBeginWith reports whether a value that matches pattern (a template parameter's or a
// step result's, anchored as ^(?:pattern)$) may begin with c: whether `[A-Za-z0-9._/-]+` lets a
// branch name begin with "-" (it does) and `[A-Za-z0-9][A-Za-z0-9._/-]*` does not. It errs on the
// side of yes: a pattern that does not parse may begin with anything.
func PatternMayBeginWith(pattern string, c rune) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return true
	}
	may, _ := mayBeginWith(re.Simplify(), c)
	return may
}

// mayBeginWith says whether a match of re may begin with c, and whether re matches the empty
// string (so that what follows it may begin the match).
func mayBeginWith(re *syntax.Regexp, c rune) (may, empty bool) {
	switch re.Op {
	case syntax.OpNoMatch:
		return false, false
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return false, true
		}
		return sameRune(re.Rune[0], c, re.Flags&syntax.FoldCase != 0), false
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= c && c <= re.Rune[i+1] {
				return true, false
			}
		}
		return false, false
	case syntax.OpAnyCharNotNL:
		return c != '\n', false
	case syntax.OpAnyChar:
		return true, false
	case syntax.OpCapture, syntax.OpPlus:
		return mayBeginWith(re.Sub[0], c)
	case syntax.OpStar, syntax.OpQuest:
		may, _ = mayBeginWith(re.Sub[0], c)
		return may, true
	case syntax.OpRepeat:
		if re.Max == 0 {
			return false, true
		}
		may, empty = mayBeginWith(re.Sub[0], c)
		return may, empty || re.Min == 0
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			m, e := mayBeginWith(sub, c)
			may = may || m
			if !e {
				return may, false
			}
		}
		return may, true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			m, e := mayBeginWith(sub, c)
			may, empty = may || m, empty || e
		}
		return may, empty
	}
	// The empty string and the zero-width assertions (^, $, \b).
	return false, true
}

// sameRune compares two runes, ignoring case under (?i).
func sameRune(r, c rune, fold bool) bool {
	if r == c {
		return true
	}
	for f := unicode.SimpleFold(r); fold && f != r; f = unicode.SimpleFold(f) {
		if f == c {
			return true
		}
	}
	return false
}
