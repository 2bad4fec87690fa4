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

// ScriptWarnings says where a step's command line runs a script (sh -c SCRIPT, python -c CODE) into which a
// value nothing constrains is replaced: a step result without a pattern and, in a template (params
// not nil), a parameter without allowedValues or a pattern, which whoever runs the template
// chooses. Such a value with `;` or `$(...)` in it runs as commands, with the step's credentials.
// An inline Workflow's parameters are its author's own and are not reported. specPath is the
// path of the spec ("spec", or "spec.workflowSpec" of a CronWorkflow).
func ScriptWarnings(specPath *field.Path, steps, finally []custodyv1alpha1.Step, params []custodyv1alpha1.ParameterSpec) []string {
	constrained := map[string]bool{}
	for _, p := range params {
		constrained[p.Name] = len(p.AllowedValues) > 0 || p.Pattern != ""
	}
	patterned := map[[2]string]bool{}
	for _, list := range [][]custodyv1alpha1.Step{custodyv1alpha1.ExpandForEach(steps), custodyv1alpha1.ExpandForEach(finally)} {
		for _, st := range list {
			for _, r := range st.Results {
				patterned[[2]string{st.Name, r.Name}] = r.Pattern != ""
			}
		}
	}
	var warnings []string
	for _, list := range []struct {
		name  string
		steps []custodyv1alpha1.Step
	}{{fieldSteps, steps}, {fieldFinally, finally}} {
		for i, st := range list.steps {
			program, script, ok := inlineScript(append(append([]string{}, st.Command...), st.Args...))
			if !ok {
				continue
			}
			seen := map[string]bool{}
			for _, r := range expr.Refs(script) {
				var fix string
				switch {
				case r.Param != "" && params != nil && !constrained[r.Param]:
					fix = "or limit the parameter with allowedValues or a pattern"
				case r.Result != "" && !patterned[[2]string{r.Step, r.Result}]:
					fix = "or give the result a pattern"
				default:
					continue
				}
				if seen[r.String()] {
					continue
				}
				seen[r.String()] = true
				warnings = append(warnings, fmt.Sprintf("%s: step %q replaces %s in the script it runs with %q: a value with ; or $(...) "+
					"in it would run as commands, with the step's credentials. Pass it in env instead and read it from there (quoted, "+
					"\"$VALUE\", in a shell), %s", specPath.Child(list.name).Index(i), st.Name, r, program, fix))
			}
		}
	}
	return warnings
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
