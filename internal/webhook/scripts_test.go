package webhook

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/expr"
)

// TestInlineScript: the script of a shell's -c, or an interpreter's code, is found after the
// program's other options, and a command line that runs a script file, or no such program, has none.
func TestInlineScript(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		shell, script string
	}{
		{[]string{"sh", "-c", "echo hi"}, "sh -c", "echo hi"},
		{[]string{"/bin/bash", "-euxc", "make $(params.target)"}, "bash -c", "make $(params.target)"},
		{[]string{"bash", "-euo", "pipefail", "-c", "run"}, "bash -c", "run"},
		{[]string{"bash", "-o", "pipefail", "--noprofile", "-c", "run"}, "bash -c", "run"},
		{[]string{"busybox", "sh", "-c", "run"}, "sh -c", "run"},
		{[]string{"sh", "deploy.sh", "-c", "not a script"}, "", ""},
		{[]string{"/usr/bin/python3", "-u", "-c", "print(1)"}, "python3 -c", "print(1)"},
		{[]string{"node", "--eval", "run()"}, "node --eval", "run()"},
		{[]string{"perl", "-e", "print 1"}, "perl -e", "print 1"},
		{[]string{"python3", "main.py", "-c", "not code"}, "", ""},
		{[]string{"java", "-cp", "app.jar"}, "", ""},
		{[]string{"sh", "-c"}, "", ""},
		{[]string{"deploy", "--branch=$(params.branch)"}, "", ""},
	} {
		shell, script, ok := inlineScript(tc.argv)
		if shell != tc.shell || script != tc.script || ok != (tc.shell != "") {
			t.Errorf("inlineScript(%q) = %q, %q, %v; want %q, %q", tc.argv, shell, script, ok, tc.shell, tc.script)
		}
	}
}

// TestOptionWarnings: an argument that begins with a value someone else chooses, and that the
// value is not kept from beginning with "-", is warned of once, naming the reference; "--"
// before it, an option's "=", an option's value, or a value kept from beginning with "-" is not.
func TestOptionWarnings(t *testing.T) {
	build := custodyv1alpha1.Step{Name: "build", Results: []custodyv1alpha1.ResultSpec{
		{Name: "any"}, {Name: "digest", Pattern: `sha256:[0-9a-f]{64}`}, {Name: "ref", Pattern: `[a-z0-9-]+`}}}
	param := func(p custodyv1alpha1.ParameterSpec) []custodyv1alpha1.ParameterSpec {
		return []custodyv1alpha1.ParameterSpec{p}
	}
	branch := custodyv1alpha1.ParameterSpec{Name: "branch"}
	for _, tc := range []struct {
		name    string
		params  []custodyv1alpha1.ParameterSpec
		command []string
		args    []string
		want    []string // the references warned of, in order
	}{
		{"a template's free parameter", param(branch), nil, []string{"checkout", "$(params.branch)"}, []string{"$(params.branch)"}},
		{"twice, once", param(branch), []string{"git"}, []string{"$(params.branch)", "x", "$(params.branch)"}, []string{"$(params.branch)"}},
		{"the first reference of an argument", param(branch), nil, []string{"$(params.branch)-$(steps.build.results.any)"},
			[]string{"$(params.branch)"}},
		{"a pattern that lets it begin with -", param(custodyv1alpha1.ParameterSpec{Name: "branch", Pattern: `[A-Za-z0-9._/-]+`}),
			nil, []string{"checkout", "$(params.branch)"}, []string{"$(params.branch)"}},
		{"a pattern that does not", param(custodyv1alpha1.ParameterSpec{Name: "branch", Pattern: `[A-Za-z0-9][A-Za-z0-9._/-]*`}),
			nil, []string{"checkout", "$(params.branch)"}, nil},
		{"allowed values that do not", param(custodyv1alpha1.ParameterSpec{Name: "branch", AllowedValues: []string{"main", "dev"}}),
			nil, []string{"checkout", "$(params.branch)"}, nil},
		{"an allowed value that does", param(custodyv1alpha1.ParameterSpec{Name: "branch", AllowedValues: []string{"main", "-f"}}),
			nil, []string{"checkout", "$(params.branch)"}, []string{"$(params.branch)"}},
		{"after --", param(branch), nil, []string{"checkout", "--", "src", "$(params.branch)"}, nil},
		{"in an option's =", param(branch), nil, []string{"checkout", "--branch=$(params.branch)"}, nil},
		{"an option's value", param(branch), nil, []string{"checkout", "-b", "$(params.branch)"}, nil},
		{"the program itself", param(branch), []string{"$(params.branch)"}, nil, nil},
		{"the image's program's first argument", param(branch), nil, []string{"$(params.branch)"}, []string{"$(params.branch)"}},
		{"an inline run's own parameter", nil, nil, []string{"checkout", "$(params.branch)"}, nil},
		{"a result without a pattern", nil, nil, []string{"tag", "$(steps.build.results.any)"}, []string{"$(steps.build.results.any)"}},
		{"a result with a pattern that keeps it from -", nil, nil, []string{"tag", "$(steps.build.results.digest)"}, nil},
		{"a result with one that does not", nil, nil, []string{"tag", "$(steps.build.results.ref)"}, []string{"$(steps.build.results.ref)"}},
		{"a script: its own warning", param(branch), []string{"sh", "-c"}, []string{"git checkout $(params.branch)", "$(params.branch)"},
			[]string{"script"}},
	} {
		step := custodyv1alpha1.Step{Name: "deploy", DependsOn: []string{"build"}, Command: tc.command, Args: tc.args}
		got := ValueWarnings(field.NewPath("spec"), []custodyv1alpha1.Step{build, step}, nil, tc.params)
		if len(got) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if w == "script" {
				w = "in the script it runs"
			} else {
				w = `spec.steps[1]: step "deploy" passes ` + w + " as an argument of its own: a value that begins with - would be read as an option"
			}
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: warning %q, want %q in it", tc.name, got[i], w)
			}
		}
	}
}

// TestValueWarningsThroughEnv: a value passed in env is safe only if the program reads the
// variable itself ("$BRANCH" in a shell); written $(BRANCH) in the script or an argument, the
// kubelet replaces it first, and that is warned of as if the value were written there.
func TestValueWarningsThroughEnv(t *testing.T) {
	params := []custodyv1alpha1.ParameterSpec{{Name: "branch"}, {Name: "safe", Pattern: `[a-z][a-z0-9]*`}}
	env := []custodyv1alpha1.EnvVar{{Name: "BRANCH", Value: "$(params.branch)"}, {Name: "SAFE", Value: "$(params.safe)"},
		{Name: "LATE", Value: "x$(params.branch)"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          string // "": no warning
	}{
		{"the shell reads it", []string{"sh", "-c"}, []string{`git checkout "$BRANCH"`}, ""},
		{"the kubelet replaces it in the script", []string{"sh", "-c"}, []string{`git checkout $(BRANCH)`},
			`spec.steps[0]: step "deploy" has the kubelet replace $(BRANCH) in the script it runs with "sh -c", and its env BRANCH ` +
				`holds $(params.branch): a value with ; or $(...) in it would run as commands`},
		{"escaped, the shell's command substitution", []string{"sh", "-c"}, []string{`git checkout $$(BRANCH)`}, ""},
		{"a constrained one in the script", []string{"sh", "-c"}, []string{`git checkout $(SAFE)`}, ""},
		{"an argument that begins with it", nil, []string{"checkout", "$(BRANCH)"},
			`spec.steps[0]: step "deploy" passes $(BRANCH), its env BRANCH that begins with $(params.branch), as an argument of its own`},
		{"an argument with it later", nil, []string{"checkout", "--branch=$(BRANCH)"}, ""},
		{"an env value that does not begin with it", nil, []string{"checkout", "$(LATE)"}, ""},
		{"a variable the step does not have", nil, []string{"checkout", "$(HOME)"}, ""},
	} {
		step := custodyv1alpha1.Step{Name: "deploy", Command: tc.command, Args: tc.args, Env: env}
		got := ValueWarnings(field.NewPath("spec"), []custodyv1alpha1.Step{step}, nil, params)
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: warnings %q, want none", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%s: warnings %q, want one with %q", tc.name, got, tc.want)
		}
	}
	names, leading := expr.KubeletVars("$(A)-$$(B) $(C")
	if len(names) != 1 || names[0] != "A" || !leading {
		t.Errorf("KubeletVars = %q, %v; want [A], true", names, leading)
	}
}
