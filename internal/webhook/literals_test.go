package webhook

import (
	"strings"
	"testing"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestLiteralErrors: on an update, credential-shaped text the object already had at the same
// place is let through (so an old CronWorkflow can still be suspended); new or changed text is
// refused.
func TestLiteralErrors(t *testing.T) {
	token := func(c string) string { return "glpat-" + strings.Repeat(c, 20) }
	tpl := func(values ...string) *custodyv1alpha1.WorkflowTemplateSpec {
		spec := &custodyv1alpha1.WorkflowTemplateSpec{Steps: []custodyv1alpha1.Step{{Name: "a", Image: "x"}}}
		spec.Steps[0].Args = values
		return spec
	}
	old := TemplateLiterals(tpl(token("a"), "plain"))
	if len(old) != 1 || old[0].Path.String() != "spec.steps[0].args[0]" || old[0].What != "a GitLab token" {
		t.Fatalf("TemplateLiterals = %+v", old)
	}
	if errs := LiteralErrors(TemplateLiterals(tpl(token("a"), "plain")), old); len(errs) != 0 {
		t.Errorf("unchanged literal refused: %v", errs)
	}
	errs := LiteralErrors(TemplateLiterals(tpl(token("b"), token("a"))), old)
	if len(errs) != 2 || errs[0].Field != "spec.steps[0].args[0]" || errs[1].Field != "spec.steps[0].args[1]" {
		t.Errorf("changed and moved literals: %v, want both refused", errs)
	}
	if s := errs.ToAggregate().Error(); strings.Contains(s, "glpat-") {
		t.Errorf("the error repeats the credential: %s", s)
	}
}
