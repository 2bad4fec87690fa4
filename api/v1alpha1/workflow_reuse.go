package v1alpha1

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
)

// ReuseProblem says why run may not take over the succeeded steps of src (its spec.reuseFrom),
// or "" when it may: src must have failed or been cancelled, and have run the same steps (as
// resolved: template, step defaults and forEach items) with the same parameter values, since a
// step's results depend on both. Finally steps are not compared: they always run again. A run
// of a template that is not resolved yet (at admission) is compared by its template's name; the
// controller compares the steps once it resolved it.
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
	} else if msg := stepsDiffer(def.Steps, srcDef.Steps); msg != "" {
		return fmt.Sprintf("workflow %s ran other steps than this run: %s", src.Name, msg)
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

// stepsDiffer names the first difference between two lists of steps, or returns "".
func stepsDiffer(steps, src []Step) string {
	for i := range min(len(steps), len(src)) {
		switch {
		case steps[i].Name != src[i].Name:
			return fmt.Sprintf("step %d is %q here and %q there", i+1, steps[i].Name, src[i].Name)
		case !equality.Semantic.DeepEqual(steps[i], src[i]):
			return fmt.Sprintf("step %q differs", steps[i].Name)
		}
	}
	if len(steps) != len(src) {
		return fmt.Sprintf("%d steps here, %d there", len(steps), len(src))
	}
	return ""
}
