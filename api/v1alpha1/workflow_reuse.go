package v1alpha1

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
)

// ReuseProblem says why run may not take over the succeeded steps of src (its spec.reuseFrom),
// or "" when it may: src must have failed or been cancelled, and have run with the same
// parameter values, since any step's results may depend on them. A run of a template that is not
// resolved yet (at admission) must name src's template; which steps are taken over is decided
// step by step once both are resolved (PlanReuse).
func ReuseProblem(run, src *Workflow) string {
	switch src.Status.Phase {
	case WorkflowFailed, WorkflowCancelled:
	case WorkflowSucceeded:
		return fmt.Sprintf("workflow %s succeeded, so none of its steps needs to run again; resubmit it without reuseFrom to run "+
			"them all", src.Name)
	default:
		return fmt.Sprintf("workflow %s has not ended; a run can reuse the steps of one that failed or was cancelled", src.Name)
	}
	srcDef, ok := src.Definition()
	if !ok {
		return fmt.Sprintf("workflow %s never resolved its template, so none of its steps ran", src.Name)
	}
	def, resolved := run.Definition()
	if !resolved {
		ref, srcRef := run.Spec.WorkflowTemplateRef, src.Spec.WorkflowTemplateRef
		if ref == nil || srcRef == nil || ref.Name != srcRef.Name {
			return fmt.Sprintf("workflow %s ran other steps than this run (it is not a run of the same template)", src.Name)
		}
		def.Parameters = srcDef.Parameters // the same template: the same defaults
	}
	values, srcValues := ParameterValues(def.Parameters, run.Spec.Parameters), ParameterValues(srcDef.Parameters, src.Spec.Parameters)
	for _, name := range slices.Sorted(maps.Keys(srcValues)) {
		if v, ok := values[name]; !ok || v != srcValues[name] {
			return fmt.Sprintf("parameter %q has another value in workflow %s; its steps' results may depend on it", name, src.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if _, ok := srcValues[name]; !ok {
			return fmt.Sprintf("parameter %q has no value in workflow %s; its steps' results may depend on it", name, src.Name)
		}
	}
	return ""
}

// ReusePlan is what a run takes over from the run its spec.reuseFrom names (PlanReuse). It is
// computed, never stored.
// +kubebuilder:object:generate=false
type ReusePlan struct {
	// Reused are the steps taken over, in the order of the run's steps.
	Reused []string
	// Again are the steps that succeeded in the source run but run again, in the same order.
	Again []RunAgain
}

// RunAgain is a step that succeeded in the source run and runs again, and why.
// +kubebuilder:object:generate=false
type RunAgain struct {
	Step, Why string
}

// PlanReuse decides which steps of run (a run ReuseProblem accepts, both runs resolved: step
// defaults applied, forEach items expanded) are taken over from src. A step is taken over when
//
//   - it succeeded in src, is the same there in what it runs (sameWork: every field but those
//     that only shape how an attempt runs), and every step it depends on is taken over or was
//     skipped there by its own unchanged `when` (so it would be again): a step is only as
//     reusable as the results and outcomes it was run on;
//   - and, if it has an approval, every step after it (its descendants here) is the same in src:
//     an approval lets through what was approved, so a changed or added step after the gate asks
//     for it again instead of inheriting it.
//
// Every other step runs as usual; finally steps always run. ok is false when either run has not
// resolved its template.
func PlanReuse(run, src *Workflow) (plan ReusePlan, ok bool) {
	def, ok := run.Definition()
	if !ok {
		return ReusePlan{}, false
	}
	srcDef, ok := src.Definition()
	if !ok {
		return ReusePlan{}, false
	}
	srcSteps := map[string]*Step{}
	for i := range srcDef.Steps {
		srcSteps[srcDef.Steps[i].Name] = &srcDef.Steps[i]
	}
	srcPhase := map[string]StepStatus{} // of src's steps, not its finally steps
	for _, st := range src.Status.Steps {
		if _, ok := srcSteps[st.Name]; ok {
			srcPhase[st.Name] = st
		}
	}
	steps := map[string]*Step{}
	dependents := map[string][]string{}
	for i := range def.Steps {
		st := &def.Steps[i]
		steps[st.Name] = st
		for _, d := range st.DependsOn {
			dependents[d] = append(dependents[d], st.Name)
		}
	}
	p := reusePlanner{steps: steps, srcSteps: srcSteps, dependents: dependents, srcPhase: srcPhase,
		why: map[string]string{}, stable: map[string]bool{}}
	for _, st := range def.Steps {
		p.decide(st.Name)
	}
	for _, st := range def.Steps {
		if srcPhase[st.Name].Phase != StepSucceeded {
			continue
		}
		if why := p.why[st.Name]; why != "" {
			plan.Again = append(plan.Again, RunAgain{Step: st.Name, Why: why})
		} else {
			plan.Reused = append(plan.Reused, st.Name)
		}
	}
	return plan, true
}

// reusePlanner memoizes, step by step, whether a step's outcome in src holds for the run (stable)
// and, for one that does not, why.
// +kubebuilder:object:generate=false
type reusePlanner struct {
	steps      map[string]*Step
	srcSteps   map[string]*Step
	dependents map[string][]string
	srcPhase   map[string]StepStatus
	why        map[string]string
	stable     map[string]bool
}

// decide reports whether step name keeps its outcome in src: it succeeded there, or its `when`
// skipped it there, and neither it, what it depends on nor (for an approval) what follows it
// changed. Steps form a DAG (checked before reuse is planned); a step seen again while it is being
// decided counts as not stable.
func (p *reusePlanner) decide(name string) bool {
	if stable, ok := p.stable[name]; ok {
		return stable
	}
	p.stable[name] = false
	st := p.srcPhase[name]
	switch {
	case st.Phase == StepSkipped && st.Reason == StepReasonWhenFalse, st.Phase == StepSucceeded:
	default:
		return false
	}
	if !p.same(name) {
		p.why[name] = "it changed"
		return false
	}
	for _, d := range p.steps[name].DependsOn {
		if !p.decide(d) {
			p.why[name] = fmt.Sprintf("it depends on step %s, which runs again", d)
			return false
		}
	}
	if p.steps[name].Approval != nil {
		if changed := p.changedAfter(name, map[string]bool{}); changed != "" {
			p.why[name] = fmt.Sprintf("its approval is asked for again, since step %s after it %s", changed, p.novelty(changed))
			return false
		}
	}
	p.stable[name] = true
	return true
}

// same reports whether step name of the run is in src and does the same work there (sameWork).
func (p *reusePlanner) same(name string) bool {
	old, ok := p.srcSteps[name]
	return ok && sameWork(p.steps[name], old)
}

// sameWork reports whether two steps do the same work: every field alike but those that shape
// only how an attempt runs, not what a successful one produced or was allowed to do: its timeout,
// retries, resources, placement (nodeSelector, tolerations, priorityClassName), imagePullPolicy,
// onFailure and a forEach step's parallelism. Raising a timeout (often through stepDefaults, for every step)
// after one timed out must not run every step again. Image, command, args, env, credentials,
// when, dependencies, approval and results are the step's work and its guard: any change there
// counts.
func sameWork(a, b *Step) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equality.Semantic.DeepEqual(workOf(a), workOf(b))
}

// workOf is a copy of st without the fields sameWork ignores.
func workOf(st *Step) *Step {
	w := st.DeepCopy()
	w.Timeout, w.Retries, w.Resources, w.Parallelism = nil, nil, nil, nil
	w.NodeSelector, w.Tolerations, w.PriorityClassName, w.OnFailure, w.ImagePullPolicy = nil, nil, "", "", ""
	return w
}

// novelty says how a step that is not the same as in src differs.
func (p *reusePlanner) novelty(name string) string {
	if _, ok := p.srcSteps[name]; !ok {
		return "is new"
	}
	return "changed"
}

// changedAfter returns a step after name (a descendant) that is new or differs from src, or "".
func (p *reusePlanner) changedAfter(name string, seen map[string]bool) string {
	for _, d := range p.dependents[name] {
		if seen[d] {
			continue
		}
		seen[d] = true
		if !p.same(d) {
			return d
		}
		if changed := p.changedAfter(d, seen); changed != "" {
			return changed
		}
	}
	return ""
}
