package v1alpha1

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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
