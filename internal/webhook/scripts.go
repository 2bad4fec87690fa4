package webhook

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/expr"
)

// inlineCode maps the programs that run code given on their command line to the short option
// that gives it (a shell's -c SCRIPT, python's -c, node's, perl's and ruby's -e) and whether they
// are shells, which also take -o NAME.
var inlineCode = map[string]struct {
	opt   byte
	shell bool
}{
	"sh": {'c', true}, "bash": {'c', true}, "ash": {'c', true}, "dash": {'c', true}, "zsh": {'c', true}, "ksh": {'c', true},
	"mksh": {'c', true}, "python": {'c', false}, "python3": {'c', false}, "node": {'e', false}, "perl": {'e', false},
	"ruby": {'e', false},
}

// ValueWarnings says where a step's command line lets a value nothing constrains change what the
// step does: a step result without a pattern and, in a template (params not nil), a parameter
// without allowedValues or a pattern, which whoever runs the template chooses. An inline
// Workflow's parameters are its author's own and are not reported. specPath is the path of the
// spec ("spec", or "spec.workflowSpec" of a CronWorkflow). Two ways are reported:
//
//   - a script (sh -c SCRIPT, python -c CODE) with the value replaced in it: one with ; or $(...)
//     runs as commands, with the step's credentials;
//   - an argument that begins with the value (args: [checkout, "$(params.branch)"]) and that no
//     "--" comes before: one that begins with "-" is read as an option (git's --upload-pack=CMD
//     runs CMD), unless the value is kept from beginning with "-" (no allowed value does, the
//     pattern cannot).
//
// Both also through a variable of the step's env that holds the value, written $(NAME) in the
// script or the argument: the kubelet replaces it before the program runs.
func ValueWarnings(specPath *field.Path, steps, finally []custodyv1alpha1.Step, params []custodyv1alpha1.ParameterSpec) []string {
	v := values{params: params != nil, constrained: map[string]bool{}, noDash: map[string]bool{},
		patterned: map[[2]string]bool{}, resultNoDash: map[[2]string]bool{}}
	for _, p := range params {
		v.constrained[p.Name] = len(p.AllowedValues) > 0 || p.Pattern != ""
		v.noDash[p.Name] = v.constrained[p.Name] && noneBeginWithDash(p.AllowedValues) &&
			(len(p.AllowedValues) > 0 || !custodyv1alpha1.PatternMayBeginWith(p.Pattern, '-'))
	}
	for _, list := range [][]custodyv1alpha1.Step{custodyv1alpha1.ExpandForEach(steps), custodyv1alpha1.ExpandForEach(finally)} {
		for _, st := range list {
			for _, r := range st.Results {
				k := [2]string{st.Name, r.Name}
				v.patterned[k] = r.Pattern != ""
				v.resultNoDash[k] = r.Pattern != "" && !custodyv1alpha1.PatternMayBeginWith(r.Pattern, '-')
			}
		}
	}
	var warnings []string
	for _, list := range []struct {
		name  string
		steps []custodyv1alpha1.Step
	}{{fieldSteps, steps}, {fieldFinally, finally}} {
		for i, st := range list.steps {
			at := specPath.Child(list.name).Index(i)
			argv := append(append([]string{}, st.Command...), st.Args...)
			env := map[string]string{}
			for _, e := range st.Env {
				if e.ValueFrom == nil {
					env[e.Name] = e.Value
				}
			}
			if program, script, ok := inlineScript(argv); ok {
				warnings = append(warnings, v.scriptWarnings(at, st.Name, program, script, env)...)
				continue
			}
			if len(st.Command) > 0 {
				argv = argv[1:] // the program itself
			}
			warnings = append(warnings, v.optionWarnings(at, st.Name, argv, env)...)
		}
	}
	return warnings
}

// values is what ValueWarnings knows of the values a step may be given.
type values struct {
	// params: the parameters are a template's, which whoever runs it gives.
	params bool
	// constrained: a parameter has allowedValues or a pattern; noDash: they keep it from
	// beginning with "-".
	constrained, noDash map[string]bool
	// patterned: a result (step, name) has a pattern; resultNoDash: it keeps the result from
	// beginning with "-".
	patterned, resultNoDash map[[2]string]bool
}

// scriptWarnings warns of the unconstrained values replaced in a script: written in it, or
// through a variable of the step's env that holds one, written $(NAME) in the script, which the
// kubelet replaces before the shell runs (the shell's own "$NAME" is safe).
func (v values) scriptWarnings(at *field.Path, step, program, script string, env map[string]string) []string {
	var warnings []string
	seen := map[string]bool{}
	warn := func(r expr.Ref, via string) {
		fix, ok := v.scriptFix(r)
		if !ok || seen[via+r.String()] {
			return
		}
		seen[via+r.String()] = true
		if via == "" {
			warnings = append(warnings, fmt.Sprintf("%s: step %q replaces %s in the script it runs with %q: a value with ; or $(...) "+
				"in it would run as commands, with the step's credentials. Pass it in env instead and read it from there (quoted, "+
				"\"$VALUE\", in a shell), %s", at, step, r, program, fix))
			return
		}
		warnings = append(warnings, fmt.Sprintf("%s: step %q has the kubelet replace $(%s) in the script it runs with %q, and its env "+
			"%s holds %s: a value with ; or $(...) in it would run as commands, with the step's credentials. Read the variable in "+
			"the script as the shell's \"$%s\" (quoted), which the kubelet leaves alone, %s", at, step, via, program, via, r, via, fix))
	}
	for _, r := range expr.Refs(script) {
		warn(r, "")
	}
	names, _ := expr.KubeletVars(script)
	for _, name := range names {
		if value, ok := env[name]; ok {
			for _, r := range expr.Refs(value) {
				warn(r, name)
			}
		}
	}
	return warnings
}

// scriptFix says whether a value replaced in a script is one nothing constrains, and how to
// constrain it.
func (v values) scriptFix(r expr.Ref) (string, bool) {
	switch {
	case r.Param != "" && v.params && !v.constrained[r.Param]:
		return "or limit the parameter with allowedValues or a pattern", true
	case r.Result != "" && !v.patterned[[2]string{r.Step, r.Result}]:
		return "or give the result a pattern", true
	}
	return "", false
}

// optionWarnings warns of the arguments (argv without the program) that begin with a value that
// may begin with "-", written there or through a variable of the step's env that begins with
// one ($(NAME), which the kubelet replaces). An argument after "--" is not an option; one right
// after an option without "=" (--branch VALUE) is taken to be that option's value.
func (v values) optionWarnings(at *field.Path, step string, argv []string, env map[string]string) []string {
	var warnings []string
	seen := map[string]bool{}
	for i, a := range argv {
		if a == "--" {
			break
		}
		if i > 0 && len(argv[i-1]) > 1 && argv[i-1][0] == '-' && !strings.Contains(argv[i-1], "=") {
			continue
		}
		r, via, ok := leadingRef(a, env)
		if !ok {
			continue
		}
		var fix string
		switch {
		case r.Param != "" && v.params && !v.noDash[r.Param]:
			fix = "or limit the parameter with allowedValues or a pattern that cannot begin with -"
		case r.Result != "" && !v.resultNoDash[[2]string{r.Step, r.Result}]:
			fix = "or give the result a pattern that cannot begin with -"
		default:
			continue
		}
		if seen[via+r.String()] {
			continue
		}
		seen[via+r.String()] = true
		what := r.String()
		if via != "" {
			what = fmt.Sprintf("$(%s), its env %s that begins with %s,", via, via, r)
		}
		warnings = append(warnings, fmt.Sprintf("%s: step %q passes %s as an argument of its own: a value that begins with - would "+
			"be read as an option (git's --upload-pack=COMMAND runs COMMAND), with the step's credentials. Put \"--\" before the "+
			"arguments that are not options, if the program takes it, %s", at, step, what, fix))
	}
	return warnings
}

// leadingRef finds the reference an argument begins with: written there, or the one that begins
// the value of the env variable the argument begins with ($(NAME)), which via names.
func leadingRef(arg string, env map[string]string) (r expr.Ref, via string, ok bool) {
	if refs := expr.Refs(arg); len(refs) > 0 && strings.HasPrefix(arg, refs[0].String()) {
		return refs[0], "", true
	}
	names, leading := expr.KubeletVars(arg)
	if !leading {
		return expr.Ref{}, "", false
	}
	value, found := env[names[0]]
	if refs := expr.Refs(value); found && len(refs) > 0 && strings.HasPrefix(value, refs[0].String()) {
		return refs[0], names[0], true
	}
	return expr.Ref{}, "", false
}

// noneBeginWithDash says whether no value of the list begins with "-".
func noneBeginWithDash(list []string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, "-") {
			return false
		}
	}
	return true
}

// inlineScript finds the code a command line (command, then args) gives a shell (-c SCRIPT) or an
// interpreter (python -c, node/perl/ruby -e) to run: the program and option as written
// ("sh -c"), and the code.
func inlineScript(argv []string) (program, script string, ok bool) {
	for i, a := range argv {
		name := path.Base(a)
		prog, known := inlineCode[name]
		if !known {
			continue
		}
		for j := i + 1; j < len(argv); j++ {
			f := argv[j]
			switch {
			case name == "node" && (f == "--eval" || f == "--print") && j+1 < len(argv):
				return name + " " + f, argv[j+1], true
			case strings.HasPrefix(f, "--") && f != "--":
				// a long option (--login, --norc)
			case len(f) > 1 && (f[0] == '-' || f[0] == '+') && f != "--":
				if f[0] == '-' && strings.IndexByte(f, prog.opt) > 0 && j+1 < len(argv) {
					return name + " -" + string(prog.opt), argv[j+1], true
				}
				if prog.shell && strings.HasSuffix(f, "o") {
					j++ // -o pipefail, -euo pipefail: an option name follows
				}
			default:
				j = len(argv) // a script file, or the end of the options: no inline code
			}
		}
	}
	return "", "", false
}
