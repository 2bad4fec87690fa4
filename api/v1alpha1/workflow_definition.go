package v1alpha1

import (
	"fmt"
	"slices"
	"strings"
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
// status.template when it was resolved, with the Workflow's own parallelism and timeout winning
// over the template's, and every forEach step expanded into its items (ExpandForEach). ok is false
// for a template run that is not resolved yet.
func (wf *Workflow) Definition() (def WorkflowTemplateSpec, ok bool) {
	if def, ok = wf.definition(); ok {
		def.Steps, def.Finally = ExpandForEach(def.Steps), ExpandForEach(def.Finally)
	}
	return def, ok
}

// ForEachOf returns the forEach step of the run that step is one item of, and the item; "", ""
// when step is not an item of one.
func (wf *Workflow) ForEachOf(step string) (forEach, item string) {
	def, _ := wf.definition()
	for _, st := range def.AllSteps() {
		for _, it := range st.ForEach {
			if ItemStepName(st.Name, it) == step {
				return st.Name, it
			}
		}
	}
	return "", ""
}

// ItemStepName is the name of the step that runs one item of a forEach step.
func ItemStepName(step, item string) string { return step + "-" + item }

// ExpandForEach returns steps with each forEach step replaced, in place, by one step per item:
// named ItemStepName, without forEach, with $(item) replaced by the item in command, args and env
// values. A step that depends on a forEach step depends on all of its items instead.
func ExpandForEach(steps []Step) []Step {
	items := map[string][]string{}
	n := 0
	for _, st := range steps {
		n += max(len(st.ForEach), 1)
		for _, it := range st.ForEach {
			items[st.Name] = append(items[st.Name], ItemStepName(st.Name, it))
		}
	}
	if len(items) == 0 {
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
		if len(st.ForEach) == 0 {
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

// definition is Definition without the forEach expansion.
func (wf *Workflow) definition() (def WorkflowTemplateSpec, ok bool) {
	switch {
	case wf.Spec.WorkflowTemplateRef == nil:
		def = WorkflowTemplateSpec{Steps: wf.Spec.Steps, Finally: wf.Spec.Finally}
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
	return def, true
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
// the allowed values if the declaration lists them. The error lists every problem.
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
	}
	for _, d := range declared {
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
