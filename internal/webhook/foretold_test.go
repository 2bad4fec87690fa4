package webhook

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
)

// TestForetold: the ServiceAccount names of attempts to come are known from the run's UID, the
// step (of the spec, its finally steps, or an item step in status) and the number, even when the
// name is truncated to 63 characters; other names are nobody's.
func TestForetold(t *testing.T) {
	long := strings.Repeat("nightly-reconciliation-", 3)
	runs := []custodyv1alpha1.Workflow{
		{ObjectMeta: metav1.ObjectMeta{Name: "release", UID: types.UID("3f1c-uid")},
			Spec: custodyv1alpha1.WorkflowSpec{
				Steps:   []custodyv1alpha1.Step{{Name: "deploy"}, {Name: "scan", ForEach: []string{"a", "b"}}},
				Finally: []custodyv1alpha1.Step{{Name: "notify"}}},
			Status: custodyv1alpha1.WorkflowStatus{Steps: []custodyv1alpha1.StepStatus{{Name: "scan-a"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: long, UID: types.UID("77aa-uid")},
			Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{{Name: "settle-accounts"}}}},
	}
	for _, c := range []struct{ name, want string }{
		{jobspec.Name("release", "3f1c-uid", "deploy", 1), "step deploy (attempt 1, to come) of workflow release"},
		{jobspec.Name("release", "3f1c-uid", "deploy", 12), "step deploy (attempt 12, to come) of workflow release"},
		{jobspec.Name("release", "3f1c-uid", "notify", 2), "step notify (attempt 2, to come) of workflow release"},
		{jobspec.Name("release", "3f1c-uid", "scan-a", 1), "step scan-a (attempt 1, to come) of workflow release"},
		{jobspec.Name(long, "77aa-uid", "settle-accounts", 3), "step settle-accounts (attempt 3, to come) of workflow " + long},
		{jobspec.Name("release", "other-uid", "deploy", 1), ""}, // the same names, another run
		{jobspec.Name("release", "3f1c-uid", "rollback", 1), ""},
		{strings.Replace(jobspec.Name("release", "3f1c-uid", "deploy", 1), "-1-", "-0-", 1), ""},
		{"tools", ""},
		{"-", ""},
		{"release-deploy-x-abcdef", ""},
	} {
		if got := foretold(runs, c.name); got != c.want {
			t.Errorf("foretold(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}
