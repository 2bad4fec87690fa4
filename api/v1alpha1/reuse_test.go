package v1alpha1

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReuseProblem_templateRuns: runs of a template are compared by the template's name until
// they are resolved (then step by step, TestPlanReuse); a parameter left at its default equals
// the same value given.
func TestReuseProblem_templateRuns(t *testing.T) {
	def := "7"
	tpl := WorkflowTemplateSpec{
		Parameters: []ParameterSpec{{Name: "db", Default: nil}, {Name: "keep", Default: &def}},
		Steps:      []Step{{Name: "dump", Image: "example.com/dump:1", Args: []string{"$(params.db)"}}},
	}
	src := &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "backup"},
		Parameters: []Parameter{{Name: "db", Value: "orders"}}}}
	src.Name = "backup-1"
	src.Status = WorkflowStatus{Phase: WorkflowFailed, Template: &ResolvedTemplate{Name: "backup", Spec: tpl}}
	run := func(template string, params ...Parameter) *Workflow {
		return &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: template}, Parameters: params,
			ReuseFrom: src.Name}}
	}
	changed := *tpl.DeepCopy()
	changed.Steps[0].Image = "example.com/dump:2"
	resolved := func(w *Workflow, spec WorkflowTemplateSpec) *Workflow {
		w.Status.Template = &ResolvedTemplate{Name: w.Spec.WorkflowTemplateRef.Name, Spec: spec}
		return w
	}
	for name, c := range map[string]struct {
		run  *Workflow
		want string
	}{
		"same template, not resolved":         {run("backup", Parameter{Name: "db", Value: "orders"}), ""},
		"a default given as the same value":   {run("backup", Parameter{Name: "db", Value: "orders"}, Parameter{Name: "keep", Value: "7"}), ""},
		"a default given as another value":    {run("backup", Parameter{Name: "db", Value: "orders"}, Parameter{Name: "keep", Value: "30"}), `parameter "keep" has another value`},
		"another template":                    {run("restore", Parameter{Name: "db", Value: "orders"}), "not a run of the same template"},
		"resolved to the same steps":          {resolved(run("backup", Parameter{Name: "db", Value: "orders"}), tpl), ""},
		"resolved after the template changed": {resolved(run("backup", Parameter{Name: "db", Value: "orders"}), changed), ""},
		"another parameter value":             {run("backup", Parameter{Name: "db", Value: "users"}), `parameter "db" has another value`},
	} {
		got := ReuseProblem(c.run, src)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	src.Status.Template = nil
	if got := ReuseProblem(run("backup"), src); !strings.Contains(got, "never resolved its template") {
		t.Errorf("a source that never resolved its template: %q", got)
	}
}

// TestPlanReuse: a run takes over a step that succeeded in the run it reuses only when the step,
// what it depends on and (for an approval) every step after it are as they were there.
func TestPlanReuse(t *testing.T) {
	approval := &StepApproval{Approvers: Approvers{Users: []string{"bob"}}}
	steps := func() []Step {
		return []Step{
			{Name: "build", Image: "example.com/b:1"},
			{Name: "lint", Image: "example.com/l:1"},
			{Name: "scan", Image: "example.com/s:1", DependsOn: []string{"build"}, When: "params.scan == 'yes'"},
			{Name: "test", Image: "example.com/t:1", DependsOn: []string{"build", "scan"}},
			{Name: "gate", Image: "example.com/g:1", DependsOn: []string{"test"}, Approval: approval},
			{Name: "deploy", Image: "example.com/d:1", DependsOn: []string{"gate", "lint"}},
		}
	}
	src := &Workflow{Spec: WorkflowSpec{Steps: steps(), Finally: []Step{{Name: "notify", Image: "example.com/n:1"}}}}
	src.Name = "release"
	src.Status.Phase = WorkflowFailed
	src.Status.Steps = []StepStatus{{Name: "build", Phase: StepSucceeded}, {Name: "lint", Phase: StepSucceeded},
		{Name: "scan", Phase: StepSkipped, Reason: StepReasonWhenFalse}, {Name: "test", Phase: StepSucceeded},
		{Name: "gate", Phase: StepSucceeded}, {Name: "deploy", Phase: StepFailed}, {Name: "notify", Phase: StepSucceeded}}
	type want struct{ reused, again string }
	for name, c := range map[string]struct {
		change func([]Step) []Step
		want   want
	}{
		"the same steps": {func(s []Step) []Step { return s }, want{"build lint test gate", ""}},
		"the failed step fixed": {func(s []Step) []Step { s[5].Image = "example.com/d:2"; return s },
			want{"build lint test", "gate: its approval is asked for again, since step deploy after it changed"}},
		"a succeeded step changed": {func(s []Step) []Step { s[0].Args = []string{"--race"}; return s },
			want{"lint", "build: it changed|test: it depends on step build, which runs again|gate: it depends on step test, which runs again"}},
		"a skipped step changed": {func(s []Step) []Step { s[2].When = "true"; return s },
			want{"build lint", "test: it depends on step scan, which runs again|gate: it depends on step test, which runs again"}},
		"a step added after the gate": {func(s []Step) []Step {
			return append(s, Step{Name: "smoke", Image: "example.com/k:1", DependsOn: []string{"deploy"}})
		}, want{"build lint test", "gate: its approval is asked for again, since step smoke after it is new"}},
		"a step added beside": {func(s []Step) []Step {
			return append(s, Step{Name: "docs", Image: "example.com/o:1", DependsOn: []string{"build"}})
		}, want{"build lint test gate", ""}},
		"the failed step removed": {func(s []Step) []Step { return s[:5] }, want{"build lint test gate", ""}},
		"how steps run changed, not what they do": {func(s []Step) []Step {
			for i := range s {
				s[i].Timeout, s[i].Retries = &metav1.Duration{Duration: time.Hour}, &RetryPolicy{Limit: 3}
				s[i].Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
				s[i].NodeSelector, s[i].PriorityClassName, s[i].OnFailure = map[string]string{"pool": "big"}, "batch-low", StepFailureContinue
				s[i].ImagePullPolicy = corev1.PullAlways
			}
			return s
		}, want{"build lint test gate", ""}},
		"a step's credentials changed": {func(s []Step) []Step { s[1].Credentials = []string{"registry"}; return s },
			want{"build test gate", "lint: it changed"}},
	} {
		run := &Workflow{Spec: WorkflowSpec{Steps: c.change(steps()), ReuseFrom: src.Name}}
		plan, ok := PlanReuse(run, src)
		if !ok {
			t.Fatalf("%s: not planned", name)
		}
		var again []string
		for _, a := range plan.Again {
			again = append(again, a.Step+": "+a.Why)
		}
		if got := (want{strings.Join(plan.Reused, " "), strings.Join(again, "|")}); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, c.want)
		}
	}
	// A timeout raised for every step through stepDefaults, after one timed out.
	longer := &Workflow{Spec: WorkflowSpec{Steps: steps(), ReuseFrom: src.Name,
		StepDefaults: &StepDefaults{Timeout: &metav1.Duration{Duration: 2 * time.Hour}}}}
	if plan, _ := PlanReuse(longer, src); strings.Join(plan.Reused, " ") != "build lint test gate" || len(plan.Again) != 0 {
		t.Errorf("a longer default timeout: %+v, want every step that succeeded taken over", plan)
	}
	tpl := &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "release"}}}
	if _, ok := PlanReuse(tpl, src); ok {
		t.Error("a run whose template is not resolved was planned")
	}
}
