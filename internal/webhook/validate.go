package webhook

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/cronschedule"
	"github.com/custody-dev/custody/internal/dag"
	"github.com/custody-dev/custody/internal/expr"
)

// The fields of a definition that list steps.
const (
	fieldSteps   = "steps"
	fieldFinally = "finally"
)

// ValidateWorkflowSpec checks what the CRD's schema and CEL rules cannot: that dependsOn has no
// cycle, that every `when` compiles and is boolean, and that every parameter and step result a
// step reads exists and comes from one of the step's ancestors (for a finally step: any step, or
// one of its finally ancestors). Only finally steps may read workflow.phase. Each error names the
// step and the field. A run of a template is checked against the template by admission, which
// reads it; here only its own fields are. It is pure, so the same checks can run anywhere.
func ValidateWorkflowSpec(spec *custodyv1alpha1.WorkflowSpec) field.ErrorList {
	return validateWorkflowSpec(field.NewPath("spec"), spec)
}

func validateWorkflowSpec(path *field.Path, spec *custodyv1alpha1.WorkflowSpec) field.ErrorList {
	if spec.WorkflowTemplateRef != nil {
		return nil
	}
	params, values := map[string]bool{}, map[string]string{}
	for _, p := range spec.Parameters {
		params[p.Name], values[p.Name] = true, p.Value
	}
	errs := validateStepDefaults(path.Child("stepDefaults"), spec.StepDefaults, params)
	return append(errs, validateDefinition(path, spec.Steps, spec.Finally, spec.Results, params, values)...)
}

// validateStepDefaults checks step defaults as a step's fields are checked; their env values may
// read parameters only, since the same value goes to every step.
func validateStepDefaults(path *field.Path, d *custodyv1alpha1.StepDefaults, params map[string]bool) field.ErrorList {
	if d == nil {
		return nil
	}
	const who = "stepDefaults"
	errs := validateResources(path.Child("resources"), who, d.Resources)
	errs = append(errs, validatePlacement(path, &custodyv1alpha1.Step{Name: who, NodeSelector: d.NodeSelector, Tolerations: d.Tolerations})...)
	errs = append(errs, validateScratch(path.Child("scratch"), &custodyv1alpha1.Step{Name: who, Scratch: d.Scratch})...)
	for i, e := range d.Env {
		p := path.Child("env").Index(i).Child("value")
		if strings.Contains(e.Value, custodyv1alpha1.ItemRef) {
			errs = append(errs, field.Invalid(p, e.Value, "stepDefaults read $(item), which only a forEach step has: set it in that step's env"))
		}
		for _, r := range expr.Refs(e.Value) {
			switch {
			case r.Param != "" && !params[r.Param]:
				errs = append(errs, field.Invalid(p, e.Value, fmt.Sprintf("stepDefaults read %s, but the workflow declares no parameter %q",
					r.String(), r.Param)))
			case r.Param == "" && !r.Item:
				errs = append(errs, field.Invalid(p, e.Value, fmt.Sprintf("stepDefaults read %s, which depends on the step: "+
					"set it in the env of the steps that read it", r.String())))
			}
		}
	}
	if d.Retries != nil && d.Retries.When != "" {
		p, w := path.Child("retries", "when"), d.Retries.When
		refs, err := expr.RetryWhenRefs(w)
		if err != nil {
			errs = append(errs, field.Invalid(p, w, fmt.Sprintf("stepDefaults: retries.when %v", err)))
		}
		for _, r := range refs {
			switch {
			case r.Item:
				errs = append(errs, field.Invalid(p, w, "stepDefaults read item, which only a forEach step has: set retries in that step"))
			case !params[r.Param]:
				errs = append(errs, field.Invalid(p, w, fmt.Sprintf("stepDefaults read params.%s, but the workflow declares no parameter %q",
					r.Param, r.Param)))
			}
		}
	}
	return errs
}

// ValidateWorkflowTemplateSpec checks a template as ValidateWorkflowSpec checks a Workflow; steps
// may read the parameters the template declares. The items of a forEach step that come from a
// parameter are known per run: admission checks them when a run is created (checkRun); here they
// are checked with the parameters' defaults, where every parameter the step takes items from has
// one.
func ValidateWorkflowTemplateSpec(spec *custodyv1alpha1.WorkflowTemplateSpec) field.ErrorList {
	params, defaults := map[string]bool{}, map[string]string{}
	for _, p := range spec.Parameters {
		params[p.Name] = true
		if p.Default != nil {
			defaults[p.Name] = *p.Default
		}
	}
	errs := validateParameterPatterns(spec.Parameters)
	errs = append(errs, validateStepDefaults(field.NewPath("spec", "stepDefaults"), spec.StepDefaults, params)...)
	errs = append(errs, validateDefinition(field.NewPath("spec"), spec.Steps, spec.Finally, spec.Results, params, nil)...)
	for _, list := range []struct {
		name  string
		steps []custodyv1alpha1.Step
	}{{fieldSteps, spec.Steps}, {fieldFinally, spec.Finally}} {
		for i, st := range list.steps {
			if !st.ItemsFromParameters() || !allDefaulted(st.ForEach, defaults) {
				continue
			}
			_, problems := st.Items(defaults)
			for _, msg := range problems {
				errs = append(errs, field.Invalid(field.NewPath("spec", list.name).Index(i).Child("forEach"), st.ForEach,
					"with the parameters' defaults, "+msg))
			}
		}
	}
	return errs
}

// validateParameterPatterns checks that each template parameter's pattern is a regular expression
// that its default and allowed values match.
func validateParameterPatterns(params []custodyv1alpha1.ParameterSpec) field.ErrorList {
	var errs field.ErrorList
	for i, p := range params {
		if p.Pattern == "" {
			continue
		}
		path := field.NewPath("spec", "parameters").Index(i)
		re, err := custodyv1alpha1.CompilePattern(p.Pattern)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("pattern"), p.Pattern, fmt.Sprintf("parameter %s: %v", p.Name, err)))
			continue
		}
		if p.Default != nil && !re.MatchString(*p.Default) {
			errs = append(errs, field.Invalid(path.Child("default"), *p.Default,
				fmt.Sprintf("parameter %s: the default does not match the pattern", p.Name)))
		}
		for j, v := range p.AllowedValues {
			if !re.MatchString(v) {
				errs = append(errs, field.Invalid(path.Child("allowedValues").Index(j), v,
					fmt.Sprintf("parameter %s: an allowed value that does not match the pattern could never be given", p.Name)))
			}
		}
	}
	return errs
}

// allDefaulted says whether every parameter the forEach entries take items from has a default.
func allDefaulted(entries []string, defaults map[string]string) bool {
	for _, e := range entries {
		if name, ok := custodyv1alpha1.ItemsParameter(e); ok {
			if _, ok := defaults[name]; !ok {
				return false
			}
		}
	}
	return true
}

// ValidateCronWorkflowSpec checks a CronWorkflow's schedule and time zone, and its workflowSpec
// as a Workflow's spec.
func ValidateCronWorkflowSpec(spec *custodyv1alpha1.CronWorkflowSpec) field.ErrorList {
	var errs field.ErrorList
	if _, err := cronschedule.Parse(spec.Schedule, ptr.Deref(spec.TimeZone, "")); err != nil {
		p := field.NewPath("spec", "schedule")
		if strings.HasPrefix(err.Error(), "timeZone") {
			p = field.NewPath("spec", "timeZone")
		}
		errs = append(errs, field.Invalid(p, nil, err.Error()))
	}
	return append(errs, validateWorkflowSpec(field.NewPath("spec", "workflowSpec"), &spec.WorkflowSpec)...)
}

// validateDefinition checks steps and finally steps, each forEach step as the steps its items run
// as (reported at the forEach step, once). values are the run's parameter values, which give the
// items of forEach entries $(params.NAME); nil for a template, whose runs give them: such an entry
// is then checked as one item named after itself (a step <name>-$(params.NAME), which no other
// step can have the name of or read the results of).
func validateDefinition(path *field.Path, steps, finally []custodyv1alpha1.Step, results []custodyv1alpha1.WorkflowResultSpec,
	params map[string]bool, values map[string]string) field.ErrorList {
	var errs field.ErrorList
	fromParam := map[string]string{}
	for _, list := range []struct {
		name  string
		steps *[]custodyv1alpha1.Step
	}{{fieldSteps, &steps}, {fieldFinally, &finally}} {
		var resolved []custodyv1alpha1.Step
		for i, st := range *list.steps {
			p := path.Child(list.name).Index(i).Child("forEach")
			undeclared := false
			for j, e := range st.ForEach {
				if name, ok := custodyv1alpha1.ItemsParameter(e); ok {
					fromParam[st.Name] = name
					if !params[name] {
						undeclared = true
						errs = append(errs, field.Invalid(p.Index(j), e, fmt.Sprintf(
							"step %q runs once per item of parameter %q, but the workflow declares no parameter %q", st.Name, name, name)))
					}
				}
			}
			if values == nil || undeclared || !st.ItemsFromParameters() {
				continue
			}
			items, problems := st.Items(values)
			for _, msg := range problems {
				errs = append(errs, field.Invalid(p, st.ForEach, msg))
			}
			if len(items) == 0 {
				continue // checked as in a template, so that only the missing items are reported
			}
			if resolved == nil {
				resolved = slices.Clone(*list.steps)
			}
			resolved[i].ForEach = append([]string{}, items...)
		}
		if resolved != nil {
			*list.steps = resolved
		}
	}
	errs = append(errs, validateForEach(path, steps, finally, fromParam)...)
	forEach := map[string][]string{}
	for _, st := range append(append([]custodyv1alpha1.Step{}, steps...), finally...) {
		for _, it := range st.ForEach {
			forEach[st.Name] = append(forEach[st.Name], custodyv1alpha1.ItemStepName(st.Name, it))
		}
	}
	steps, stepPaths := expanded(path.Child(fieldSteps), steps)
	finally, finallyPaths := expanded(path.Child(fieldFinally), finally)
	index := map[string]int{}
	declared := map[string]map[string]bool{}
	for i, st := range append(append([]custodyv1alpha1.Step{}, steps...), finally...) {
		index[st.Name] = i
		declared[st.Name] = map[string]bool{}
		for _, r := range st.Results {
			declared[st.Name][r.Name] = true
		}
	}
	graph := func(p *field.Path, list []custodyv1alpha1.Step) *dag.Graph {
		nodes := make([]dag.Node, 0, len(list))
		for _, st := range list {
			nodes = append(nodes, dag.Node{Name: st.Name, DependsOn: st.DependsOn})
		}
		g, err := dag.New(nodes)
		if err != nil {
			// The CRD refuses duplicates, self-dependencies and unknown names, so this is a cycle.
			errs = append(errs, field.Invalid(p.Child("dependsOn"), nil, err.Error()))
		}
		return g
	}
	main := map[string]bool{}
	for _, st := range steps {
		main[st.Name] = true
	}
	refs := refContext{params: params, index: index, declared: declared, forEach: forEach, items: map[string]bool{},
		fromParam: fromParam}
	for _, names := range forEach {
		for _, n := range names {
			refs.items[n] = true
		}
	}
	errs = append(errs, validateSteps(stepPaths, steps, graph(path.Child(fieldSteps), steps), nil, refs)...)
	if len(finally) > 0 {
		fg := graph(path.Child(fieldFinally), finally)
		errs = append(errs, validateSteps(finallyPaths, finally, fg, main, refs)...)
	}
	return append(errs, validateResults(path.Child("results"), results, refs)...)
}

// validateResults checks that what a run's results read exists: declared parameters, and results
// that steps or finally steps declare (any of them: results are computed once the run ended).
func validateResults(path *field.Path, results []custodyv1alpha1.WorkflowResultSpec, rc refContext) field.ErrorList {
	var errs field.ErrorList
	for i, res := range results {
		p := path.Index(i).Child("value")
		who := fmt.Sprintf("result %q", res.Name)
		if strings.Contains(res.Value, custodyv1alpha1.ItemRef) {
			errs = append(errs, field.Invalid(p, res.Value, who+" reads $(item), which only a forEach step's items have: "+
				"read the result of one item's step instead"))
		}
		for _, r := range expr.Refs(res.Value) {
			msg := ""
			if r.Workflow != "" {
				msg = fmt.Sprintf("%s reads %s, which only finally steps can read: the run's phase is status.phase", who, r)
			} else {
				msg = rc.problemOf(who, "", r, r.String(), nil)
			}
			if msg != "" {
				errs = append(errs, field.Invalid(p, res.Value, msg))
			}
		}
	}
	return errs
}

// expanded returns steps as they run (ExpandForEach) and, for each, the path of the step it comes
// from; nil for every item of a forEach step but the first, whose problems are the first's.
func expanded(list *field.Path, steps []custodyv1alpha1.Step) ([]custodyv1alpha1.Step, []*field.Path) {
	var paths []*field.Path
	for i, st := range steps {
		paths = append(paths, list.Index(i))
		for range max(len(st.ForEach), 1) - 1 {
			paths = append(paths, nil)
		}
	}
	return custodyv1alpha1.ExpandForEach(steps), paths
}

// validateForEach checks what forEach adds: the steps its items run as must not have the name of
// another step, the workflow must stay within MaxSteps and MaxFinallySteps, and only a forEach
// step may read $(item). A step in fromParam has its items from a parameter, so a problem with one
// is reported at its forEach, not at an entry.
func validateForEach(path *field.Path, steps, finally []custodyv1alpha1.Step, fromParam map[string]string) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	all := append(append([]custodyv1alpha1.Step{}, steps...), finally...)
	for _, st := range all {
		names[st.Name] = true
	}
	for _, list := range []struct {
		name  string
		steps []custodyv1alpha1.Step
		max   int
	}{{fieldSteps, steps, custodyv1alpha1.MaxSteps}, {fieldFinally, finally, custodyv1alpha1.MaxFinallySteps}} {
		n := 0
		for _, st := range list.steps {
			n += max(len(st.ForEach), 1)
		}
		if n > list.max {
			errs = append(errs, field.TooMany(path.Child(list.name), n, list.max))
		}
		for i, st := range list.steps {
			p := path.Child(list.name).Index(i)
			for j, it := range st.ForEach {
				name := custodyv1alpha1.ItemStepName(st.Name, it)
				if names[name] {
					at := p.Child("forEach").Index(j)
					if _, ok := fromParam[st.Name]; ok {
						at = p.Child("forEach") // the item may come from a parameter: no entry of its own
					}
					errs = append(errs, field.Invalid(at, it, fmt.Sprintf(
						"step %q runs item %q as step %q, which is already the name of a step", st.Name, it, name)))
				}
				names[name] = true
			}
			if len(st.ForEach) > 0 {
				continue
			}
			reads := func(f *field.Path, v string) {
				if strings.Contains(v, custodyv1alpha1.ItemRef) {
					errs = append(errs, field.Invalid(f, v, fmt.Sprintf("step %q reads %s, but only a forEach step has an item",
						st.Name, custodyv1alpha1.ItemRef)))
				}
			}
			for k, v := range st.Command {
				reads(p.Child("command").Index(k), v)
			}
			for k, v := range st.Args {
				reads(p.Child("args").Index(k), v)
			}
			for k, e := range st.Env {
				reads(p.Child("env").Index(k).Child("value"), e.Value)
			}
		}
	}
	return errs
}

// refContext is what the references of steps are checked against: the declared parameters, every
// step (as it runs) with its results, and the forEach steps with the steps their items run as.
type refContext struct {
	params   map[string]bool
	index    map[string]int
	declared map[string]map[string]bool
	forEach  map[string][]string
	items    map[string]bool // the steps that run a forEach step's items
	// fromParam maps a forEach step whose items come (in part) from a parameter to the parameter.
	fromParam map[string]string
}

// validateSteps checks the references of one list of steps, each reported at its path (a step with
// no path is not checked: another item of the same forEach step is). ended are the steps known to
// have ended before any of them starts (for finally steps: every step); nil for the steps
// themselves, who may not read workflow.phase.
func validateSteps(paths []*field.Path, steps []custodyv1alpha1.Step, g *dag.Graph, ended map[string]bool,
	rc refContext) field.ErrorList {
	var errs field.ErrorList
	for i, st := range steps {
		path := paths[i]
		if path == nil {
			continue
		}
		ancestors := map[string]bool{}
		if g != nil {
			ancestors = g.Ancestors(st.Name)
		}
		for name := range ended {
			ancestors[name] = true
		}
		if g == nil {
			ancestors = nil
		}
		check := func(p *field.Path, value string, refs []expr.Ref, written func(expr.Ref) string) {
			for _, r := range refs {
				if r.Item {
					if !rc.items[st.Name] {
						errs = append(errs, field.Invalid(p, value, fmt.Sprintf("step %q reads %s, but only a forEach step has an item",
							st.Name, written(r))))
					}
					continue
				}
				if r.Workflow != "" {
					switch {
					case ended == nil:
						errs = append(errs, field.Invalid(p, value, fmt.Sprintf("step %q reads %s, which only finally "+
							"steps can read (the outcome is known once every step ended)", st.Name, written(r))))
					case r.Workflow != "phase":
						errs = append(errs, field.Invalid(p, value, fmt.Sprintf("step %q reads %s; a finally step "+
							"can read workflow.phase only", st.Name, written(r))))
					}
					continue
				}
				if msg := rc.problem(st.Name, r, written(r), ancestors); msg != "" {
					errs = append(errs, field.Invalid(p, value, msg))
				}
			}
		}
		asWritten := func(r expr.Ref) string { return r.String() }
		// celCheck checks an expression of the step: it compiles, is boolean, and what it reads exists.
		celCheck := func(p *field.Path, src string, refsOf func(string) ([]expr.Ref, error)) {
			refs, err := refsOf(src)
			if err != nil {
				errs = append(errs, field.Invalid(p, src, fmt.Sprintf("step %q: %s %v", st.Name, strings.TrimPrefix(p.String(),
					path.String()+"."), err)))
				return
			}
			check(p, src, refs, celWritten)
		}
		if st.When != "" {
			celCheck(path.Child("when"), st.When, expr.WhenRefs)
		}
		if st.Retries != nil && st.Retries.When != "" {
			celCheck(path.Child("retries", "when"), st.Retries.When, expr.RetryWhenRefs)
		}
		for j, s := range st.Command {
			check(path.Child("command").Index(j), s, expr.Refs(s), asWritten)
		}
		for j, s := range st.Args {
			check(path.Child("args").Index(j), s, expr.Refs(s), asWritten)
		}
		for j, e := range st.Env {
			check(path.Child("env").Index(j).Child("value"), e.Value, expr.Refs(e.Value), asWritten)
		}
		for j, res := range st.Results {
			if res.Pattern == "" {
				continue
			}
			if _, err := custodyv1alpha1.CompilePattern(res.Pattern); err != nil {
				errs = append(errs, field.Invalid(path.Child("results").Index(j).Child("pattern"), res.Pattern,
					fmt.Sprintf("step %q: result %s: %v", st.Name, res.Name, err)))
			}
		}
		errs = append(errs, validateResources(path.Child("resources"), st.Name, st.Resources)...)
		errs = append(errs, validatePlacement(path, &st)...)
		errs = append(errs, validateScratch(path.Child("scratch"), &st)...)
	}
	return errs
}

// validateScratch checks what the CRD's schema cannot (a quantity's rules cost too much there):
// a scratch directory's sizeLimit is above zero, as the API server requires of the emptyDir.
func validateScratch(path *field.Path, st *custodyv1alpha1.Step) field.ErrorList {
	var errs field.ErrorList
	for i, d := range st.Scratch {
		if d.SizeLimit != nil && d.SizeLimit.Sign() <= 0 {
			errs = append(errs, field.Invalid(path.Index(i).Child("sizeLimit"), d.SizeLimit.String(),
				fmt.Sprintf("step %q: scratch directory %s: sizeLimit must be above zero, such as 512Mi", st.Name, d.Path)))
		}
	}
	return errs
}

// validatePlacement checks a step's nodeSelector and tolerations as the API server would check
// them in its Job, so that a mistake is refused with the step's name instead of failing the step.
func validatePlacement(path *field.Path, st *custodyv1alpha1.Step) field.ErrorList {
	var errs field.ErrorList
	for _, k := range slices.Sorted(maps.Keys(st.NodeSelector)) {
		p := path.Child("nodeSelector").Key(k)
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p, k, fmt.Sprintf("step %q: label key %s", st.Name, msg)))
		}
		for _, msg := range validation.IsValidLabelValue(st.NodeSelector[k]) {
			errs = append(errs, field.Invalid(p, st.NodeSelector[k], fmt.Sprintf("step %q: label value %s", st.Name, msg)))
		}
	}
	for i, t := range st.Tolerations {
		p := path.Child("tolerations").Index(i)
		problem := func(f, value, msg string) {
			errs = append(errs, field.Invalid(p.Child(f), value, fmt.Sprintf("step %q: %s", st.Name, msg)))
		}
		if t.Key != "" {
			for _, msg := range validation.IsQualifiedName(t.Key) {
				problem("key", t.Key, msg)
			}
		}
		switch t.Operator {
		case corev1.TolerationOpExists:
			if t.Value != "" {
				problem("value", t.Value, "must be empty when operator is Exists")
			}
		case corev1.TolerationOpEqual, "":
			if t.Key == "" {
				problem("operator", string(t.Operator), "must be Exists when key is empty (a toleration of every taint)")
			}
			for _, msg := range validation.IsValidLabelValue(t.Value) {
				problem("value", t.Value, msg)
			}
		default:
			problem("operator", string(t.Operator), "must be Equal or Exists")
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			problem("effect", string(t.Effect), "must be NoSchedule, PreferNoSchedule, NoExecute or empty (all effects)")
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			problem("tolerationSeconds", fmt.Sprint(*t.TolerationSeconds), "may only be set with effect NoExecute")
		}
	}
	return errs
}

// validateResources refuses what the API server would refuse in the step's Job and the CRD's
// schema cannot express: negative quantities, requests above their limits, and resource claims
// (a step pod has none to refer to).
func validateResources(path *field.Path, step string, r *corev1.ResourceRequirements) field.ErrorList {
	if r == nil {
		return nil
	}
	var errs field.ErrorList
	for _, list := range []struct {
		name string
		rl   corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		for _, name := range slices.Sorted(maps.Keys(list.rl)) {
			if q := list.rl[name]; q.Sign() < 0 {
				errs = append(errs, field.Invalid(path.Child(list.name).Key(string(name)), q.String(),
					fmt.Sprintf("step %q: must not be negative", step)))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		req := r.Requests[name]
		if limit, ok := r.Limits[name]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(path.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("step %q: must not be more than its limit of %s", step, limit.String())))
		}
	}
	if len(r.Claims) > 0 {
		errs = append(errs, field.Forbidden(path.Child("claims"), fmt.Sprintf("step %q: a step pod has no resource claims to use", step)))
	}
	return errs
}

// celWritten is how a `when` reference reads in CEL.
func celWritten(r expr.Ref) string {
	switch {
	case r.Param != "":
		return "params." + r.Param
	case r.Workflow != "":
		return "workflow." + r.Workflow
	case r.Item:
		return "item"
	case r.Result != "":
		return "steps." + r.Step + ".results." + r.Result
	}
	return "steps." + r.Step
}

// problem says what is wrong with one reference of step, or "" when nothing is.
func (rc refContext) problem(step string, r expr.Ref, written string, ancestors map[string]bool) string {
	return rc.problemOf(fmt.Sprintf("step %q", step), step, r, written, ancestors)
}

// problemOf says what is wrong with one reference that who (a step, or a run's result) makes, or
// "" when nothing is. self is the step making it ("" for a result); ancestors are the steps it may
// read (nil: any).
func (rc refContext) problemOf(who, self string, r expr.Ref, written string, ancestors map[string]bool) string {
	if r.Param != "" {
		if !rc.params[r.Param] {
			return fmt.Sprintf("%s reads %s, but the workflow declares no parameter %q", who, written, r.Param)
		}
		return ""
	}
	if _, isStep := rc.index[r.Step]; !isStep || rc.items[r.Step] {
		base := ""
		for b := range rc.fromParam {
			if (strings.HasPrefix(r.Step, b+"-") || r.Step == b) && len(b) > len(base) {
				base = b
			}
		}
		if base != "" {
			return fmt.Sprintf("%s reads %s, but the items of step %q come from parameter %q, so which steps run "+
				"them is known only per run: their results cannot be read", who, written, base, rc.fromParam[base])
		}
	}
	if items, ok := rc.forEach[r.Step]; ok {
		return fmt.Sprintf("%s reads %s, but step %q runs once per item (forEach): read one item's step instead (%s)",
			who, written, r.Step, strings.Join(items, ", "))
	}
	if _, ok := rc.index[r.Step]; !ok {
		return fmt.Sprintf("%s reads %s, but the workflow has no step %q", who, written, r.Step)
	}
	if r.Step == self {
		return fmt.Sprintf("%s reads %s, its own result, which does not exist before it ends", who, written)
	}
	if ancestors != nil && !ancestors[r.Step] {
		return fmt.Sprintf("%s reads %s, but %q is not among the steps it depends on (directly or through "+
			"their dependencies), so it may not have run yet: add it to dependsOn", who, written, r.Step)
	}
	if r.Result != "" && !rc.declared[r.Step][r.Result] {
		return fmt.Sprintf("%s reads %s, but step %q declares no result %q", who, written, r.Step, r.Result)
	}
	return ""
}

// ValidateGrantReferences checks that every object a grant names is a plain name in the grant's
// own namespace: a grant can never reach into another namespace.
func ValidateGrantReferences(spec *custodyv1alpha1.CredentialGrantSpec) field.ErrorList {
	var errs field.ErrorList
	cred := field.NewPath("spec", "credential")
	name := func(p *field.Path, v, what string) {
		if strings.Contains(v, "/") {
			errs = append(errs, field.Invalid(p, v, fmt.Sprintf("%s must be a name in the grant's own namespace, "+
				"not a path: a CredentialGrant may only reference objects in its namespace", what)))
			return
		}
		for _, msg := range validation.IsDNS1123Subdomain(v) {
			errs = append(errs, field.Invalid(p, v, what+": "+msg))
		}
	}
	if s := spec.Credential.Secret; s != nil {
		name(cred.Child("secret", "name"), s.Name, "the Secret")
	}
	if r := spec.Credential.KubernetesRole; r != nil {
		// Role names are path segments, not DNS names (system:aggregate-to-edit is valid).
		if strings.Contains(r.Name, "/") || strings.Contains(r.Name, "%") || r.Name == "." || r.Name == ".." {
			errs = append(errs, field.Invalid(cred.Child("kubernetesRole", "name"), r.Name,
				"the role must be a name in the grant's own namespace (or a ClusterRole), not a path"))
		}
	}
	return errs
}
