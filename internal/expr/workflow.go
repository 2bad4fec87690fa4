package expr

import custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"

// StepEnv is what the `when` and $(...) references of a step of wf read, but the steps' outcome
// (Env.Workflow), which only finally steps read: the run's parameter values (def's declarations
// with wf's values), the item of a forEach item step, and every step's phase in status with its
// results if it succeeded.
func StepEnv(wf *custodyv1alpha1.Workflow, def custodyv1alpha1.WorkflowTemplateSpec, step string) Env {
	env := Env{Params: custodyv1alpha1.ParameterValues(def.Parameters, wf.Spec.Parameters), Steps: map[string]StepView{}}
	_, env.Item = wf.ForEachOf(step)
	for _, st := range wf.Status.Steps {
		view := StepView{Phase: string(st.Phase), Results: map[string]string{}}
		if st.Phase == custodyv1alpha1.StepSucceeded {
			for _, res := range st.Results {
				view.Results[res.Name] = res.Value
			}
		}
		env.Steps[st.Name] = view
	}
	return env
}
