package cli

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/expr"
)

// writeToApprove prints, under a step that waits for an approval, what an approval lets run: the
// image, the command and args and the env as the program will get them (the values they read,
// parameters, the item, the results of the steps before it, put in as the controller puts them
// when the step starts; then the kubelet's $$ and $(VAR)), and the grants the step will hold; then
// how to reject it. A finally step's $(workflow.phase) is left as it is.
func writeToApprove(w io.Writer, indent string, wf *custodyv1alpha1.Workflow, def custodyv1alpha1.WorkflowTemplateSpec, name string) {
	step := specStepOf(def, name)
	if step == nil {
		return
	}
	env := expr.StepEnv(wf, def, name)
	if isFinally(def, name) {
		env.Workflow = map[string]string{"phase": "$(workflow.phase)"}
	}
	// What the program gets: the values put in as the controller puts them (ForContainer), then the
	// kubelet's expansion of the author's text ($$ is one $, $(VAR) a variable of the container,
	// each env value seeing the variables before it). A ConfigMap's variable is not known here and
	// stays $(VAR).
	resolve := func(s string, vars map[string]string) string {
		v, err := expr.ForContainer(s, env)
		if err != nil {
			return s // what cannot be resolved yet is shown as written; the step fails with InvalidReference
		}
		return expr.KubeletExpand(v, vars)
	}
	vars := map[string]string{}
	var envs []string
	for _, e := range step.Env {
		if e.ValueFrom != nil {
			ref := &e.ValueFrom.ConfigMapKeyRef
			envs = append(envs, fmt.Sprintf("%s from ConfigMap %s key %s", e.Name, ref.Name, ref.Key))
			continue
		}
		vars[e.Name] = resolve(e.Value, vars)
		envs = append(envs, e.Name+"="+shellQuote(vars[e.Name]))
	}
	words := func(in []string) string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = shellQuote(resolve(s, vars))
		}
		return strings.Join(out, " ")
	}
	line := func(format string, args ...any) { _, _ = fmt.Fprintf(w, indent+"   "+format+"\n", args...) }
	line("to approve: image %s", step.Image)
	if len(step.Command) > 0 {
		line("  command: %s", words(step.Command))
	}
	if len(step.Args) > 0 {
		line("  args: %s", words(step.Args))
	}
	for _, e := range step.EnvFrom {
		envs = append(envs, "all of ConfigMap "+e.ConfigMapRef.Name+prefixed(e.Prefix))
	}
	if len(envs) > 0 {
		line("  env: %s", strings.Join(envs, ", "))
	}
	if len(step.Credentials) > 0 {
		line("  credentials: %s", strings.Join(step.Credentials, ", "))
	}
	line("to reject it instead: kubectl custody reject %s %s --reason TEXT", wf.Name, name)
}

func prefixed(p string) string {
	if p == "" {
		return ""
	}
	return " (prefixed " + p + ")"
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes a word as a POSIX shell would need it, so that the words of a command line
// stay apart when read (two words in single quotes; a quote inside as the shell's quote-escape-quote).
func shellQuote(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
