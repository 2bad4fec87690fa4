package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
)

// TestExpandForEach: a forEach step runs as one step per item, in its place, each reading its item;
// a step that depends on it depends on every item; everything else is left as it is.
func TestExpandForEach(t *testing.T) {
	steps := []Step{
		{Name: "build", Image: "b", Args: []string{"$(item)"}}, // not a forEach step: $(item) stays
		{Name: "deploy", Image: "d", DependsOn: []string{"build"}, ForEach: []string{"eu", "us"},
			Command: []string{"deploy"}, Args: []string{"--region=$(item)", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "$(item)"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "verify", Image: "v", DependsOn: []string{"deploy", "build"}},
	}
	orig := *(&WorkflowSpec{Steps: steps}).DeepCopy()
	got := ExpandForEach(steps)
	want := []Step{
		{Name: "build", Image: "b", Args: []string{"$(item)"}},
		{Name: "deploy-eu", Image: "d", DependsOn: []string{"build"}, Command: []string{"deploy"},
			Args:     []string{"--region=eu", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "eu"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "deploy-us", Image: "d", DependsOn: []string{"build"}, Command: []string{"deploy"},
			Args:     []string{"--region=us", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "us"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "verify", Image: "v", DependsOn: []string{"deploy-eu", "deploy-us", "build"}},
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("expanded:\n%+v\nwant\n%+v", got, want)
	}
	if !equality.Semantic.DeepEqual(steps, orig.Steps) {
		t.Errorf("the spec's steps were changed: %+v", steps)
	}
	got[1].Args[0] = "changed"
	if got[2].Args[0] != "--region=us" {
		t.Error("the items share their args")
	}
	if plain := []Step{{Name: "a"}}; &ExpandForEach(plain)[0] != &plain[0] {
		t.Error("steps without forEach are copied")
	}
}

// TestForEachOf: which forEach step and item a step of a run is, for inline runs and runs of
// templates.
func TestForEachOf(t *testing.T) {
	steps := []Step{{Name: "deploy", ForEach: []string{"eu", "us-east"}}, {Name: "deploy-eu-x"}}
	inline := &Workflow{Spec: WorkflowSpec{Steps: steps}}
	fromTemplate := &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "t"}},
		Status: WorkflowStatus{Template: &ResolvedTemplate{Name: "t", Spec: WorkflowTemplateSpec{Finally: steps}}}}
	for _, wf := range []*Workflow{inline, fromTemplate} {
		for step, want := range map[string][2]string{
			"deploy-us-east": {"deploy", "us-east"}, "deploy-eu": {"deploy", "eu"},
			"deploy": {}, "deploy-eu-x": {}, "deploy-ap": {},
		} {
			if f, it := wf.ForEachOf(step); f != want[0] || it != want[1] {
				t.Errorf("ForEachOf(%s) = %q, %q; want %q, %q", step, f, it, want[0], want[1])
			}
		}
	}
	def, _ := fromTemplate.Definition()
	if len(def.Finally) != 3 || def.Finally[1].Name != "deploy-us-east" {
		t.Errorf("a template's forEach steps are not expanded: %+v", def.Finally)
	}
}
