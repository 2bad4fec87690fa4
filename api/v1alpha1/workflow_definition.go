package v1alpha1

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ItemRef is replaced by the item in the command, args and env values of a forEach step's items.
const ItemRef = "$(item)"

// MaxSteps and MaxFinallySteps bound a run's steps and finally steps, forEach items counted (its
// status has one entry for each).
const (
	MaxSteps        = 64
	MaxFinallySteps = 16
)

// Definition returns what a run executes: its inline steps, or the template recorded in
// status.template when it was resolved, with the Workflow's own parallelism, timeout and
// imagePullSecrets winning over the template's, the stepDefaults applied (ApplyStepDefaults), and
// every forEach step expanded into its items (ExpandForEach). ok is false for a template run that is not resolved yet.
func (wf *Workflow) Definition() (def WorkflowTemplateSpec, ok bool) {
	if def, ok = wf.definition(); ok {
		params := ParameterValues(def.Parameters, wf.Spec.Parameters)
		def.Steps = ExpandForEach(ResolveItems(ApplyStepDefaults(def.Steps, def.StepDefaults), params))
		def.Finally = ExpandForEach(ResolveItems(ApplyStepDefaults(def.Finally, def.StepDefaults), params))
	}
	return def, ok
}

// ForEachOf returns the forEach step of the run that step is one item of, and the item; "", ""
// when step is not an item of one.
func (wf *Workflow) ForEachOf(step string) (forEach, item string) {
	def, _ := wf.definition()
	params := map[string]string(nil)
	for _, st := range def.AllSteps() {
		if !strings.HasPrefix(step, st.Name+"-") || len(st.ForEach) == 0 {
			continue
		}
		if params == nil && st.ItemsFromParameters() {
			params = ParameterValues(def.Parameters, wf.Spec.Parameters)
		}
		items, _ := st.Items(params)
		for _, it := range items {
			if ItemStepName(st.Name, it) == step {
				return st.Name, it
			}
		}
	}
	return "", ""
}

// MaxItems is the most items a forEach step runs, its parameters' items counted.
const MaxItems = 16

// ItemsParameter returns the parameter a forEach entry of the form $(params.NAME) takes its items
// from, and false for an entry that is an item itself.
func ItemsParameter(entry string) (string, bool) {
	name, ok := strings.CutPrefix(entry, "$(params.")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, ")")
	return name, ok && name != ""
}

// SplitItems returns the forEach items a parameter's value lists: separated by commas, each
// trimmed of white space, empty ones left out ("eu, us" and "eu,us," give eu and us).
func SplitItems(value string) []string {
	var items []string
	for _, it := range strings.Split(value, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	return items
}

// ItemsFromParameters says whether any forEach entry of the step names a parameter.
func (s *Step) ItemsFromParameters() bool {
	for _, e := range s.ForEach {
		if _, ok := ItemsParameter(e); ok {
			return true
		}
	}
	return false
}

// Items returns the items a forEach step runs with these parameter values: its entries in order,
// each $(params.NAME) entry replaced by the items its value lists (SplitItems). problems says what
// keeps a run from starting: a parameter that is not set or lists no item, an item that is not a
// DNS label or makes a step name longer than 63 characters, an item listed twice, more than
// MaxItems items. items holds the usable ones whatever the problems, at most MaxItems.
func (s *Step) Items(params map[string]string) (items, problems []string) {
	if !s.ItemsFromParameters() {
		return s.ForEach, nil
	}
	seen := map[string]bool{}
	for _, e := range s.ForEach {
		list, from := []string{e}, ""
		if name, ok := ItemsParameter(e); ok {
			value, set := params[name]
			if list, from = SplitItems(value), fmt.Sprintf(" (from parameter %s)", name); !set || len(list) == 0 {
				problems = append(problems, fmt.Sprintf("step %q runs once per item of parameter %s, which lists none "+
					"(a comma-separated list of items)", s.Name, name))
				continue
			}
		}
		for _, it := range list {
			if msg := itemProblem(s.Name, it); msg != "" {
				problems = append(problems, fmt.Sprintf("step %q: forEach item %q%s %s", s.Name, clip(it, 64), from, msg))
				continue
			}
			if seen[it] {
				problems = append(problems, fmt.Sprintf("step %q: forEach item %q%s is listed twice", s.Name, it, from))
				continue
			}
			seen[it] = true
			items = append(items, it)
		}
	}
	if len(items) > MaxItems {
		problems = append(problems, fmt.Sprintf("step %q runs %d items; at most %d", s.Name, len(items), MaxItems))
		items = items[:MaxItems]
	}
	if len(problems) > maxItemProblems {
		// A parameter value may list hundreds of bad items; the first ones say enough.
		problems = append(problems[:maxItemProblems], fmt.Sprintf("step %q: %d more problems with its items",
			s.Name, len(problems)-maxItemProblems))
	}
	return items, problems
}

// maxItemProblems is the most problems with one step's items that are spelled out.
const maxItemProblems = 8

// itemProblem says why an item cannot be one, or "".
func itemProblem(step, item string) string {
	if msgs := validation.IsDNS1123Label(item); len(msgs) > 0 {
		return "is not a DNS label (lower case letters, digits and '-', starting and ending with a letter or digit)"
	}
	if n := len(ItemStepName(step, item)); n > validation.DNS1123LabelMaxLength {
		return fmt.Sprintf("makes the step name %s-%s, %d characters; at most %d", step, clip(item, 64), n, validation.DNS1123LabelMaxLength)
	}
	return ""
}

func hasForEach(steps []Step) bool {
	return slices.ContainsFunc(steps, func(st Step) bool { return st.ForEach != nil })
}

// ResolveItems returns steps with every forEach entry that names a parameter replaced by the
// items its value lists (Step.Items; items with problems left out). steps itself is returned
// when no entry names a parameter.
func ResolveItems(steps []Step, params map[string]string) []Step {
	var out []Step
	for i := range steps {
		if !steps[i].ItemsFromParameters() {
			continue
		}
		if out == nil {
			out = slices.Clone(steps)
		}
		items, _ := steps[i].Items(params)
		out[i].ForEach = append([]string{}, items...) // empty, not nil, when none is usable
	}
	if out == nil {
		return steps
	}
	return out
}

// CheckItems says what keeps a run's forEach steps from running with its parameter values
// (CheckItems of its definition); nil for a run of a template that is not resolved yet.
func (wf *Workflow) CheckItems() error {
	def, ok := wf.definition()
	if !ok {
		return nil
	}
	return CheckItems(&def, ParameterValues(def.Parameters, wf.Spec.Parameters))
}

// CheckItems says what keeps the forEach steps of a definition from running with these parameter
// values: the problems of each step's items (Step.Items), an item whose step has the name of
// another step, and more than MaxSteps steps or MaxFinallySteps finally steps once items are
// counted. nil when nothing does.
func CheckItems(def *WorkflowTemplateSpec, params map[string]string) error {
	if !hasForEach(def.Steps) && !hasForEach(def.Finally) && len(def.Steps) <= MaxSteps && len(def.Finally) <= MaxFinallySteps {
		return nil
	}
	var problems []string
	names := map[string]bool{}
	for _, st := range def.AllSteps() {
		names[st.Name] = true
	}
	for _, list := range []struct {
		what  string
		steps []Step
		max   int
	}{{"steps", def.Steps, MaxSteps}, {"finally steps", def.Finally, MaxFinallySteps}} {
		n := 0
		for i := range list.steps {
			st := &list.steps[i]
			items, bad := st.Items(params)
			problems = append(problems, bad...)
			n += max(len(items), 1)
			for _, it := range items {
				if name := ItemStepName(st.Name, it); names[name] {
					problems = append(problems, fmt.Sprintf("step %q runs item %q as step %q, which is already the name of a step",
						st.Name, it, name))
				}
				names[ItemStepName(st.Name, it)] = true
			}
		}
		if n > list.max {
			problems = append(problems, fmt.Sprintf("the workflow runs %d %s once forEach items are counted; at most %d",
				n, list.what, list.max))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// ItemStepName is the name of the step that runs one item of a forEach step.
func ItemStepName(step, item string) string { return step + "-" + item }

// ExpandForEach returns steps with each forEach step replaced, in place, by one step per item:
// named ItemStepName, without forEach, with $(item) replaced by the item in command, args and env
// values. A step that depends on a forEach step depends on all of its items instead.
//
// A forEach step whose list is empty but not nil (ResolveItems: its parameter lists no usable
// item) runs no step; a run with one fails before anything starts (CheckItems).
func ExpandForEach(steps []Step) []Step {
	items := map[string][]string{}
	n, forEach := 0, false
	for _, st := range steps {
		n += max(len(st.ForEach), 1)
		forEach = forEach || st.ForEach != nil
		for _, it := range st.ForEach {
			items[st.Name] = append(items[st.Name], ItemStepName(st.Name, it))
		}
	}
	if !forEach {
		return steps
	}
	out := make([]Step, 0, n)
	for _, st := range steps {
		var deps []string
		for _, d := range st.DependsOn {
			if names, ok := items[d]; ok {
				deps = append(deps, names...)
			} else {
				deps = append(deps, d)
			}
		}
		if st.ForEach == nil {
			st.DependsOn = deps
			out = append(out, st)
			continue
		}
		for _, it := range st.ForEach {
			one := *st.DeepCopy()
			one.Name, one.ForEach, one.DependsOn = ItemStepName(st.Name, it), nil, slices.Clone(deps)
			for i := range one.Command {
				one.Command[i] = strings.ReplaceAll(one.Command[i], ItemRef, it)
			}
			for i := range one.Args {
				one.Args[i] = strings.ReplaceAll(one.Args[i], ItemRef, it)
			}
			for i := range one.Env {
				one.Env[i].Value = strings.ReplaceAll(one.Env[i].Value, ItemRef, it)
			}
			out = append(out, one)
		}
	}
	return out
}

// definition is Definition without the step defaults and the forEach expansion.
func (wf *Workflow) definition() (def WorkflowTemplateSpec, ok bool) {
	switch {
	case wf.Spec.WorkflowTemplateRef == nil:
		def = WorkflowTemplateSpec{Steps: wf.Spec.Steps, Finally: wf.Spec.Finally, StepDefaults: wf.Spec.StepDefaults,
			Results: wf.Spec.Results}
	case wf.Status.Template != nil:
		def = wf.Status.Template.Spec
	default:
		return WorkflowTemplateSpec{}, false
	}
	if wf.Spec.Parallelism != nil {
		def.Parallelism = wf.Spec.Parallelism
	}
	if wf.Spec.Timeout != nil {
		def.Timeout = wf.Spec.Timeout
	}
	if len(wf.Spec.ImagePullSecrets) > 0 {
		def.ImagePullSecrets = wf.Spec.ImagePullSecrets
	}
	return def, true
}

// ApplyStepDefaults returns steps with every field a step leaves unset taken from d: env variables
// and scratch directories the step does not name come first; resources, nodeSelector, tolerations, priorityClassName,
// imagePullPolicy, retries and timeout are taken whole when the step has none. steps itself is returned when d is nil.
func ApplyStepDefaults(steps []Step, d *StepDefaults) []Step {
	if d == nil {
		return steps
	}
	out := make([]Step, len(steps))
	for i := range steps {
		st := *steps[i].DeepCopy()
		if len(d.Env) > 0 {
			st.Env = defaultsFirst(d.Env, st.Env, func(e *EnvVar) string { return e.Name }, (*EnvVar).DeepCopy)
		}
		if len(d.Scratch) > 0 {
			st.Scratch = defaultsFirst(d.Scratch, st.Scratch, func(s *ScratchDir) string { return s.Path }, (*ScratchDir).DeepCopy)
		}
		if st.Resources == nil && d.Resources != nil {
			st.Resources = d.Resources.DeepCopy()
		}
		if st.NodeSelector == nil && d.NodeSelector != nil {
			st.NodeSelector = maps.Clone(d.NodeSelector)
		}
		if st.Tolerations == nil {
			for _, t := range d.Tolerations {
				st.Tolerations = append(st.Tolerations, *t.DeepCopy())
			}
		}
		if st.PriorityClassName == "" {
			st.PriorityClassName = d.PriorityClassName
		}
		if st.ImagePullPolicy == "" {
			st.ImagePullPolicy = d.ImagePullPolicy
		}
		if st.Retries == nil && d.Retries != nil {
			st.Retries = d.Retries.DeepCopy()
		}
		if st.Timeout == nil && d.Timeout != nil {
			st.Timeout = d.Timeout.DeepCopy()
		}
		out[i] = st
	}
	return out
}

// defaultsFirst returns copies of the defaults whose key own does not have, then own: a step's
// list with what stepDefaults add to it, the step's own entries winning.
func defaultsFirst[T any](defaults, own []T, key func(*T) string, deepCopy func(*T) *T) []T {
	out := make([]T, 0, len(defaults)+len(own))
	for i := range defaults {
		k := key(&defaults[i])
		if !slices.ContainsFunc(own, func(o T) bool { return key(&o) == k }) {
			out = append(out, *deepCopy(&defaults[i]))
		}
	}
	return append(out, own...)
}

// AllSteps returns the steps then the finally steps of a definition.
func (d *WorkflowTemplateSpec) AllSteps() []Step { return concat(d.Steps, d.Finally) }

// InlineSteps returns a spec's own steps then finally steps (none for a run of a template).
func (s *WorkflowSpec) InlineSteps() []Step { return concat(s.Steps, s.Finally) }

func concat(steps, finally []Step) []Step {
	out := make([]Step, 0, len(steps)+len(finally))
	out = append(out, steps...)
	return append(out, finally...)
}

// RequestedGrants returns the names of the CredentialGrants the steps request, sorted, each once.
func RequestedGrants(steps []Step) []string {
	var names []string
	for _, st := range steps {
		names = append(names, st.Credentials...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ParameterValues returns the values of a run's parameters: the run's own, then the declared
// defaults for those it does not set.
func ParameterValues(declared []ParameterSpec, given []Parameter) map[string]string {
	out := make(map[string]string, len(given)+len(declared))
	for _, p := range declared {
		if p.Default != nil {
			out[p.Name] = *p.Default
		}
	}
	for _, p := range given {
		out[p.Name] = p.Value
	}
	return out
}

// CheckParameters checks a run's parameter values against a template's declarations: every
// required parameter (one without a default) is set, no undeclared one is, and each value is one of
// the allowed values and matches the pattern if the declaration has them (a default it takes, the
// pattern). The error lists every problem.
func CheckParameters(declared []ParameterSpec, given []Parameter) error {
	byName := map[string]ParameterSpec{}
	for _, d := range declared {
		byName[d.Name] = d
	}
	set := map[string]bool{}
	var problems []string
	for _, p := range given {
		set[p.Name] = true
		d, ok := byName[p.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("parameter %q is not declared by the template", p.Name))
			continue
		}
		if len(d.AllowedValues) > 0 && !slices.Contains(d.AllowedValues, p.Value) {
			problems = append(problems, fmt.Sprintf("parameter %q: %q is not one of the allowed values %s",
				p.Name, clip(p.Value, 64), quoteAll(d.AllowedValues)))
		}
		if msg := patternProblem(d, p.Value, ""); msg != "" {
			problems = append(problems, msg)
		}
	}
	for _, d := range declared {
		if d.Default != nil && !set[d.Name] {
			if msg := patternProblem(d, *d.Default, "its default "); msg != "" {
				problems = append(problems, msg)
			}
		}
		if d.Default == nil && !set[d.Name] {
			msg := fmt.Sprintf("parameter %q is required", d.Name)
			if d.Description != "" {
				msg += " (" + clip(d.Description, 128) + ")"
			}
			problems = append(problems, msg)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(problems, "; "))
}

// patternProblem says why value (what, "" or "its default ") does not match a parameter's
// pattern, or "" when it does or there is none.
func patternProblem(d ParameterSpec, value, what string) string {
	if d.Pattern == "" {
		return ""
	}
	re, err := CompilePattern(d.Pattern)
	if err != nil {
		return fmt.Sprintf("parameter %q: the template's %v", d.Name, err)
	}
	if !re.MatchString(value) {
		return fmt.Sprintf("parameter %q: %s%q does not match the pattern %q", d.Name, what, clip(value, 64), clip(d.Pattern, 64))
	}
	return ""
}

func quoteAll(vs []string) string {
	q := make([]string, 0, len(vs))
	for i, v := range vs {
		if i == 8 {
			q = append(q, "...")
			break
		}
		q = append(q, fmt.Sprintf("%q", clip(v, 32)))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
