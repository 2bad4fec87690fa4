package credentials

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestCoverRuns_cronWorkflow: a grant covers a CronWorkflow's runs only by the labels they carry;
// one that names the CronWorkflow as a workflow (its runs are named NAME-<minutes>) is told so.
func TestCoverRuns_cronWorkflow(t *testing.T) {
	cw := &custodyv1alpha1.CronWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "finance"}}
	cw.Spec.WorkflowSpec.Steps = []custodyv1alpha1.Step{{Name: "pay", Image: "example.com/pay:1"},
		{Name: "archive", Image: "example.com/archive:1"}}
	byCron := &metav1.LabelSelector{MatchLabels: map[string]string{custodyv1alpha1.LabelCronWorkflow: "nightly"}}
	for _, c := range []struct {
		name     string
		subjects []custodyv1alpha1.GrantSubject
		want     string // a part of the warning; "" for none
	}{
		{"selected by its label", []custodyv1alpha1.GrantSubject{{WorkflowSelector: byCron, Steps: []string{"pay", "archive"}}}, ""},
		{"a step left out", []custodyv1alpha1.GrantSubject{{WorkflowSelector: byCron, Steps: []string{"pay"}}},
			`step "archive" of its runs will wait: CredentialGrant g selects its runs but does not list that step`},
		{"named after the CronWorkflow", []custodyv1alpha1.GrantSubject{{WorkflowName: "nightly", Steps: []string{"pay", "archive"}}},
			`steps "pay", "archive" of its runs will wait: CredentialGrant g names workflow nightly, but a CronWorkflow's runs ` +
				`are named nightly-<minutes since the epoch>; to cover every run, select custody.dev/cronworkflow=nightly`},
		{"other labels", []custodyv1alpha1.GrantSubject{{WorkflowSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"app": "pay"}}, Steps: []string{"pay", "archive"}}},
			"does not select its runs; to cover every run, select custody.dev/cronworkflow=nightly"},
	} {
		got := CoverRuns(roleGrant(c.subjects...), CronRun(cw, nil), []string{"pay", "archive"}).Warning("g")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestCoverRuns_templateOfCron: a CronWorkflow's run of a template carries the template's label
// too, so a grant that covers the template's runs covers it, images from the template.
func TestCoverRuns_templateOfCron(t *testing.T) {
	tpl := &custodyv1alpha1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "payments", Namespace: "finance"}}
	tpl.Spec.Steps = []custodyv1alpha1.Step{{Name: "pay", Image: "example.com/pay:1"}}
	cw := &custodyv1alpha1.CronWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "finance"}}
	cw.Spec.WorkflowSpec.WorkflowTemplateRef = &custodyv1alpha1.WorkflowTemplateRef{Name: "payments"}
	byTemplate := &metav1.LabelSelector{MatchLabels: map[string]string{custodyv1alpha1.LabelTemplate: "payments"}}
	g := roleGrant(custodyv1alpha1.GrantSubject{WorkflowSelector: byTemplate, Steps: []string{"pay"}, Images: []string{"example.com/pay:*"}})
	if c := CoverRuns(g, CronRun(cw, tpl), []string{"pay"}); !c.Covered() {
		t.Errorf("a grant of the template's runs: %q", c.Warning("g"))
	}
	g.Spec.Subjects[0].Images = []string{"example.com/other:*"}
	if w := CoverRuns(g, CronRun(cw, tpl), []string{"pay"}).Warning("g"); !strings.Contains(w, "or does not allow its image") {
		t.Errorf("another image: %q", w)
	}
}
