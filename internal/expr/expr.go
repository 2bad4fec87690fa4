// Package expr evaluates what a Workflow author writes besides the steps themselves: `when`
// expressions (CEL), $(params.x) and $(steps.s.results.r) references in args and env, and the
// results a step writes to its termination message. It is pure: no client, no clock.
package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// MaxResultsBytes is the most a step's termination message may hold (the kubelet's limit).
const MaxResultsBytes = 4096

// costLimit bounds the work one `when` evaluation may do, so that no expression can stall the
// controller.
const costLimit = 100_000

// StepView is what a `when` expression sees of an earlier step.
type StepView struct {
	Phase   string
	Results map[string]string
}

// Env is the data references and expressions are evaluated against.
type Env struct {
	Params map[string]string
	Steps  map[string]StepView
	// Workflow is what finally steps see of the run: "phase" is the outcome of its steps
	// (Succeeded, Failed or Cancelled). Empty for other steps.
	Workflow map[string]string
	// Item is the item of a forEach step's item ("" for other steps).
	Item string
}

// Names of the variables expressions see.
const (
	varParams = "params"
	varItem   = "item"
)

var celEnv = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable(varParams, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("steps", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("workflow", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(varItem, cel.StringType),
	)
	if err != nil {
		panic(err)
	}
	return e
}()

// When is a compiled `when` expression.
type When struct {
	prg cel.Program
}

// CompileWhen compiles a `when` expression and checks that it is boolean.
func CompileWhen(src string) (*When, error) {
	prg, err := compileBool(celEnv, src)
	if err != nil {
		return nil, err
	}
	return &When{prg: prg}, nil
}

// compileBool compiles a boolean expression in env, bounded by costLimit.
func compileBool(env *cel.Env, src string) (cel.Program, error) {
	ast, err := checkBool(env, src)
	if err != nil {
		return nil, err
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("cannot be evaluated: %w", err)
	}
	return prg, nil
}

// checkBool parses and type-checks a boolean expression in env.
func checkBool(env *cel.Env, src string) (*cel.Ast, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("does not compile: %w", iss.Err())
	}
	if !ast.OutputType().IsExactType(types.BoolType) && !ast.OutputType().IsExactType(types.DynType) {
		return nil, fmt.Errorf("must be a boolean expression, not %s", ast.OutputType())
	}
	return ast, nil
}

// evalBool evaluates a program compiled by compileBool.
func evalBool(prg cel.Program, vars map[string]any) (bool, error) {
	out, _, err := prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("evaluated to %v, not a boolean", out.Value())
	}
	return b, nil
}

// Eval evaluates the expression; an error (for example a result that does not exist, or a string
// that int() cannot parse) is returned, never a panic.
func (w *When) Eval(env Env) (bool, error) {
	steps := make(map[string]any, len(env.Steps))
	for name, s := range env.Steps {
		results := s.Results
		if results == nil {
			results = map[string]string{}
		}
		steps[name] = map[string]any{"phase": s.Phase, "results": results}
	}
	params := env.Params
	if params == nil {
		params = map[string]string{}
	}
	wf := env.Workflow
	if wf == nil {
		wf = map[string]string{}
	}
	return evalBool(w.prg, map[string]any{varParams: params, "steps": steps, "workflow": wf, varItem: env.Item})
}

// RetryEnv is what a `retries.when` expression sees of a failed attempt.
type RetryEnv struct {
	// Attempt is the number of the attempt that failed, from 1.
	Attempt int32
	// Reason is why it failed (a step reason: JobFailed, TimedOut, ResultsInvalid, JobDeleted, PodDeleted,
	// EphemeralContainerAdded).
	Reason string
	// ExitCode is the step container's exit code, NoExitCode if it never exited.
	ExitCode int32
	// Disrupted says the pod was evicted, preempted or lost with its node.
	Disrupted bool
	// Duration is how long the attempt ran: its step container's run when it ran, otherwise from
	// the attempt's start to its failure.
	Duration time.Duration
	Params   map[string]string
	Item     string
}

// NoExitCode is a failed attempt's exit code when its step container never exited (its Job was
// deleted or timed out first, its pod was never created).
const NoExitCode = -1

var retryEnv = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("attempt", cel.IntType),
		cel.Variable("reason", cel.StringType),
		cel.Variable("exitCode", cel.IntType),
		cel.Variable("disrupted", cel.BoolType),
		cel.Variable("duration", cel.DurationType),
		cel.Variable(varParams, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(varItem, cel.StringType),
	)
	if err != nil {
		panic(err)
	}
	return e
}()

// RetryWhen is a compiled `retries.when` expression.
type RetryWhen struct {
	prg cel.Program
}

// CompileRetryWhen compiles a `retries.when` expression and checks that it is boolean. Names
// other than its variables (a step's results, `workflow`) do not compile: a failed attempt is
// judged by how it failed, not by what else happened.
func CompileRetryWhen(src string) (*RetryWhen, error) {
	prg, err := compileBool(retryEnv, src)
	if err != nil {
		return nil, err
	}
	return &RetryWhen{prg: prg}, nil
}

// Eval says whether the failed attempt is retried; an error is returned, never a panic.
func (w *RetryWhen) Eval(env RetryEnv) (bool, error) {
	params := env.Params
	if params == nil {
		params = map[string]string{}
	}
	return evalBool(w.prg, map[string]any{
		"attempt": int64(env.Attempt), "reason": env.Reason, "exitCode": int64(env.ExitCode),
		"disrupted": env.Disrupted, "duration": max(env.Duration, 0), varParams: params, varItem: env.Item,
	})
}

const (
	identRE = `[A-Za-z_][A-Za-z0-9_]*`
	labelRE = `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
)

// refRE matches $(params.<name>), $(steps.<step>.results.<name>) and $(workflow.<field>).
var refRE = regexp.MustCompile(`\$\((params\.(` + identRE + `)|steps\.(` + labelRE + `)\.results\.(` + identRE + `)|workflow\.(` +
	identRE + `))\)`)

// Ref is one reference found in a string.
type Ref struct {
	// Param is set for $(params.<Param>).
	Param string
	// Step and Result are set for $(steps.<Step>.results.<Result>).
	Step, Result string
	// Workflow is set (to the field read, or "*" for a computed one) for $(workflow.<field>), or
	// when a `when` expression reads workflow.<field>: only finally steps have it.
	Workflow string
	// Item is set when a `when` expression reads item: only a forEach step's items have one.
	Item bool
}

// String returns the reference as written.
func (r Ref) String() string {
	switch {
	case r.Param != "":
		return "$(params." + r.Param + ")"
	case r.Workflow != "":
		return "$(workflow." + r.Workflow + ")"
	case r.Item:
		return "$(item)"
	}
	return "$(steps." + r.Step + ".results." + r.Result + ")"
}

// Refs returns the references in s, in order.
func Refs(s string) []Ref {
	var out []Ref
	for _, m := range refRE.FindAllStringSubmatch(s, -1) {
		switch {
		case m[2] != "":
			out = append(out, Ref{Param: m[2]})
		case m[6] != "":
			out = append(out, Ref{Workflow: m[6]})
		default:
			out = append(out, Ref{Step: m[3], Result: m[5]})
		}
	}
	return out
}

// Substitute replaces every reference in s. A reference to a parameter or result that does not
// exist is an error naming it; text that merely looks like $(...) but is not a reference is kept.
func Substitute(s string, env Env) (string, error) {
	return substitute(s, env, func(v string) string { return v })
}

// ForContainer is Substitute for a container's command, args and env values, where the kubelet
// expands $(VAR) to the container's variable VAR and turns $$ into $ (the Kubernetes API's rule for
// those fields). Every $ of a value put in is doubled, so that the program gets the parameter or
// result exactly: a value "pa$$word" or "$(HOME)" is not rewritten by the kubelet. The text around
// the references is the author's and keeps the kubelet's rule.
func ForContainer(s string, env Env) (string, error) {
	return substitute(s, env, escapeForKubelet)
}

// escapeForKubelet returns v as written in a container's command, args or env value so that the
// kubelet's expansion gives v back: every $ doubled.
func escapeForKubelet(v string) string {
	return strings.ReplaceAll(v, "$", "$$")
}

// KubeletExpand is what the kubelet does to a container's command, args and env values: $$ is
// one $, $(NAME) is the value of the container's variable NAME when vars has it and stays as
// written when not, and a $ before anything else is kept. For showing people what a program will
// get (the approval preview): the kubelet's own code is not a library.
func KubeletExpand(s string, vars map[string]string) string {
	return expandVars(s, func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

// KubeletVars returns the names of the variables the kubelet would replace in s ($(NAME), not
// $$(NAME)) if the container has them, in order, and whether s begins with one (the first).
func KubeletVars(s string) (names []string, leading bool) {
	expandVars(s, func(name string) (string, bool) {
		names = append(names, name)
		return "", false
	})
	return names, len(names) > 0 && strings.HasPrefix(s, "$("+names[0]+")")
}

// expandVars is KubeletExpand with a lookup.
func expandVars(s string, lookup func(name string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(") // not closed: kept
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func substitute(s string, env Env, quote func(string) string) (string, error) {
	var errs []error
	out := refRE.ReplaceAllStringFunc(s, func(m string) string {
		refs := Refs(m)
		if len(refs) != 1 {
			return m
		}
		r := refs[0]
		if r.Param != "" {
			v, ok := env.Params[r.Param]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: no parameter named %q", r, r.Param))
			}
			return quote(v)
		}
		if r.Workflow != "" {
			v, ok := env.Workflow[r.Workflow]
			switch {
			case env.Workflow == nil:
				errs = append(errs, fmt.Errorf("%s: only finally steps can read the workflow's outcome", r))
			case !ok:
				errs = append(errs, fmt.Errorf("%s: a finally step can read workflow.phase only", r))
			}
			return quote(v)
		}
		st, ok := env.Steps[r.Step]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: step %q has not run before this step", r, r.Step))
			return ""
		}
		v, ok := st.Results[r.Result]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: step %q (%s) has no result %q", r, r.Step, st.Phase, r.Result))
		}
		return quote(v)
	})
	return out, errors.Join(errs...)
}

// ForContainerAll is ForContainer for every string of a list (a container's command or args).
func ForContainerAll(in []string, env Env) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	out := make([]string, len(in))
	var errs []error
	for i, s := range in {
		var err error
		out[i], err = ForContainer(s, env)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// ParseResults reads a step's termination message: a JSON object whose values are strings. Only
// declared results are kept; a declared result that is missing, a value that is not a string, a
// value that looks like a credential (CredentialLike), or a message that is not a JSON object is
// an error. An empty message with nothing declared is fine. Error messages name results, never
// their values.
func ParseResults(message string, declared []string) (map[string]string, error) {
	if len(declared) == 0 {
		return nil, nil
	}
	if len(message) > MaxResultsBytes {
		return nil, fmt.Errorf("termination message is %d bytes, more than %d", len(message), MaxResultsBytes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimSpace(message)), &raw); err != nil {
		return nil, errors.New("termination message is not a JSON object of strings")
	}
	out := make(map[string]string, len(declared))
	var missing, notString []string
	for _, name := range declared {
		v, ok := raw[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			notString = append(notString, name)
			continue
		}
		out[name] = s
	}
	var errs []error
	if len(missing) > 0 {
		sort.Strings(missing)
		errs = append(errs, fmt.Errorf("missing results: %s", strings.Join(missing, ", ")))
	}
	if len(notString) > 0 {
		sort.Strings(notString)
		errs = append(errs, fmt.Errorf("results that are not strings: %s", strings.Join(notString, ", ")))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := credentialProblem(out); err != nil {
		return nil, err
	}
	return out, nil
}

// SortedKeys returns the keys of m in order.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// WhenRefs checks a `when` expression as CompileWhen does (it compiles and is boolean) and
// returns the parameters and steps it reads, so that admission can check each one exists and is
// an ancestor. A step read through a computed key (steps[params.s]) cannot be known before it
// runs and is not returned. Ref.Result is empty when the expression reads a step's phase or the
// step as a whole. Reads of `workflow` are returned with Ref.Workflow set, reads of `item` with
// Ref.Item.
func WhenRefs(src string) ([]Ref, error) {
	return refsIn(celEnv, src)
}

// RetryWhenRefs checks a `retries.when` expression as CompileRetryWhen does and returns the parameters it reads and,
// with Ref.Item set, whether it reads `item`.
func RetryWhenRefs(src string) ([]Ref, error) {
	return refsIn(retryEnv, src)
}

func refsIn(env *cel.Env, src string) ([]Ref, error) {
	ast, err := checkBool(env, src)
	if err != nil {
		return nil, err
	}
	root := celast.NavigateAST(ast.NativeRep())
	var out []Ref
	for _, id := range celast.MatchDescendants(root, celast.KindMatcher(celast.IdentKind)) {
		switch id.AsIdent() {
		case varParams:
			if name, _, ok := member(id); ok {
				out = append(out, Ref{Param: name})
			}
		case "steps":
			step, next, ok := member(id)
			if !ok {
				continue
			}
			r := Ref{Step: step}
			if field, next, ok := member(next); ok && field == "results" {
				if result, _, ok := member(next); ok {
					r.Result = result
				}
			}
			out = append(out, r)
		case "workflow":
			field, _, ok := member(id)
			if !ok {
				field = "*"
			}
			out = append(out, Ref{Workflow: field})
		case varItem:
			out = append(out, Ref{Item: true})
		}
	}
	return out, nil
}

// member returns the constant name e's parent selects from e (e.name, e['name'], has(e.name))
// and that parent.
func member(e celast.NavigableExpr) (string, celast.NavigableExpr, bool) {
	p, ok := e.Parent()
	if !ok {
		return "", nil, false
	}
	switch p.Kind() {
	case celast.SelectKind:
		return p.AsSelect().FieldName(), p, true
	case celast.CallKind:
		call := p.AsCall()
		if call.FunctionName() != "_[_]" || len(call.Args()) != 2 || call.Args()[0].ID() != e.ID() {
			return "", nil, false
		}
		key := call.Args()[1]
		if key.Kind() != celast.LiteralKind {
			return "", nil, false
		}
		s, ok := key.AsLiteral().Value().(string)
		return s, p, ok
	}
	return "", nil, false
}
