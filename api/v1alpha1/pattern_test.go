package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"
)

// TestCheckParametersPattern: a value must match the whole pattern, a default a run takes too
// (a template stored without admission may have one that does not), and a pattern that does not
// compile is reported, not panicked on.
func TestCheckParametersPattern(t *testing.T) {
	declared := []ParameterSpec{
		{Name: "version", Pattern: `v[0-9]+\.[0-9]+`},
		{Name: "branch", Pattern: `[a-z]+`, Default: ptr.To("main; rm -rf /")},
	}
	for _, tc := range []struct {
		given []Parameter
		want  []string // parts of the error; none: no error
	}{
		{[]Parameter{{Name: "version", Value: "v1.2"}, {Name: "branch", Value: "dev"}}, nil},
		{[]Parameter{{Name: "version", Value: "v1.2;ls"}, {Name: "branch", Value: "dev"}},
			[]string{`parameter "version": "v1.2;ls" does not match the pattern "v[0-9]+\\.[0-9]+"`}},
		{[]Parameter{{Name: "version", Value: "release v1.2"}, {Name: "branch", Value: "dev"}}, []string{`"release v1.2" does not match`}},
		{[]Parameter{{Name: "version", Value: "v1.2"}}, []string{`parameter "branch": its default "main; rm -rf /" does not match`}},
	} {
		err := CheckParameters(declared, tc.given)
		if len(tc.want) == 0 && err != nil || len(tc.want) > 0 && err == nil {
			t.Errorf("CheckParameters(%v) = %v, want %q", tc.given, err, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckParameters(%v) = %v, want it to say %q", tc.given, err, w)
			}
		}
	}
	if err := CheckParameters([]ParameterSpec{{Name: "x", Pattern: "(["}}, []Parameter{{Name: "x", Value: "a"}}); err == nil ||
		!strings.Contains(err.Error(), `parameter "x": the template's pattern "([" is not a regular expression (RE2 syntax): missing closing ]`) {
		t.Errorf("a pattern that does not compile: %v", err)
	}
}

// TestCheckResultPatterns: the error names the result and its pattern, never the value.
func TestCheckResultPatterns(t *testing.T) {
	declared := []ResultSpec{{Name: "digest", Pattern: `sha256:[0-9a-f]{64}`}, {Name: "url"}}
	ok := map[string]string{"digest": "sha256:" + strings.Repeat("ab", 32), "url": "anything; at all"}
	if err := CheckResultPatterns(declared, ok); err != nil {
		t.Errorf("matching results: %v", err)
	}
	bad := map[string]string{"digest": "sha256:00 && curl evil.example", "url": "x"}
	err := CheckResultPatterns(declared, bad)
	if err == nil || err.Error() != `result digest does not match its pattern "sha256:[0-9a-f]{64}"` || strings.Contains(err.Error(), "evil") {
		t.Errorf("a result that does not match: %v", err)
	}
}

// TestPatternMayBeginWith: whether a pattern lets a value begin with "-" (an option, where the
// value is an argument of its own) is read from the pattern, not guessed from its text.
func TestPatternMayBeginWith(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		may     bool
	}{
		{`[A-Za-z0-9._/-]+`, true},
		{`[A-Za-z0-9][A-Za-z0-9._/-]*`, false},
		{`v[0-9]+\.[0-9]+\.[0-9]+`, false},
		{`sha256:[0-9a-f]{64}`, false},
		{`.*`, true},
		{`.+`, true},
		{`-?[0-9]+`, true},
		{`[0-9]*-x`, true},
		{`x*-?`, true},
		{`(x{0})-`, true},
		{`(eu|us|-all)`, true},
		{`(eu|us)-[0-9]`, false},
		{`[^a-z]+`, true},
		{`[^-a-z]+`, false},
		{`\-x`, true},
		{`(?i)abc`, false},
		{`^v[0-9]$`, false},
		{`[[:alnum:]]+`, false},
		{`\PL+`, true},
		{`(`, true}, // does not parse: anything
	} {
		if got := PatternMayBeginWith(tc.pattern, '-'); got != tc.may {
			t.Errorf("PatternMayBeginWith(%q, '-') = %v, want %v", tc.pattern, got, tc.may)
		}
	}
	if !PatternMayBeginWith(`(?i)abc`, 'A') || PatternMayBeginWith(`abc`, 'A') {
		t.Errorf("(?i) should let abc begin with A, and only (?i)")
	}
}
