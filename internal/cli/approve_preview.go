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
// image, the command and args and the env with the values they read (parameters, the item, the
// results of the steps before it) replaced as the controller will replace them when the step
// starts, and the grants the step will hold; then how to reject it. A finally step's $(workflow.phase) is left as it is.
func writeToApprove(w io.Writer, indent string, wf *custodyv1alpha1.Workflow, def custodyv1alpha1.WorkflowTemplateSpec, name string) {
	step := specStepOf(def, name)
	if step == nil {
		return
	}
	env := expr.StepEnv(wf, def, name)
	if isFinally(def, name) {
		env.Workflow = map[string]string{"phase": "$(workflow.phase)"}
	}
	resolve := func(s string) string {
		if v, err := expr.Substitute(s, env); err == nil {
			return v
		}
		return s // what cannot be resolved yet is shown as written; the step fails with InvalidReference
	}
	words := func(in []string) string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = shellQuote(resolve(s))
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
	var vars []string
	for _, e := range step.Env {
		if e.ValueFrom != nil {
			ref := &e.ValueFrom.ConfigMapKeyRef
			vars = append(vars, fmt.Sprintf("%s from ConfigMap %s key %s", e.Name, ref.Name, ref.Key))
			continue
		}
		vars = append(vars, e.Name+"="+shellQuote(resolve(e.Value)))
	}
	for _, e := range step.EnvFrom {
		vars = append(vars, "all of ConfigMap "+e.ConfigMapRef.Name+prefixed(e.Prefix))
	}
	if len(vars) > 0 {
		line("  env: %s", strings.Join(vars, ", "))
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
