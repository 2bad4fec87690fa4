package workflowtemplate

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

// TestTemplateValidity: the controller reports a template that cannot run (here a cycle and a
// reference to an undeclared parameter, which only admission would otherwise catch) as Stalled
// with every problem, with a Warning Event, and Ready again once fixed; kstatus agrees.
func TestTemplateValidity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := env.Namespace(t)
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: broken}
spec:
  steps:
  - {name: a, image: example.com/a:1, dependsOn: [b], args: ["$(params.region)"]}
  - {name: b, image: example.com/b:1, dependsOn: [a]}
`), tpl); err != nil {
		t.Fatal(err)
	}
	tpl.Namespace = ns
	if err := env.Client.Create(ctx, tpl); err != nil {
		t.Fatal(err)
	}
	rec := events.NewFakeRecorder(10)
	r := &Reconciler{Client: env.Client, Recorder: rec}
	reconcile := func() *custodyv1alpha1.WorkflowTemplate {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tpl)}); err != nil {
			t.Fatal(err)
		}
		cur := &custodyv1alpha1.WorkflowTemplate{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tpl), cur); err != nil {
			t.Fatal(err)
		}
		return cur
	}

	cur := reconcile()
	c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled)
	if c == nil || c.Reason != custodyv1alpha1.ReasonInvalidSpec || !strings.Contains(c.Message, "dependsOn forms a cycle") ||
		!strings.Contains(c.Message, `declares no parameter "region"`) {
		t.Errorf("Stalled = %+v, want InvalidSpec naming the cycle and the parameter", c)
	}
	if got := kstatusOf(t, cur); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed", got)
	}
	if e := <-rec.Events; !strings.HasPrefix(e, "Warning InvalidSpec") {
		t.Errorf("event %q, want a Warning InvalidSpec", e)
	}

	cur.Spec.Steps[0].DependsOn = nil
	cur.Spec.Parameters = []custodyv1alpha1.ParameterSpec{{Name: "region", Default: ptr("eu")}}
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	cur = reconcile()
	if c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady); c == nil ||
		c.Status != metav1.ConditionTrue || c.Reason != custodyv1alpha1.ReasonValid || c.ObservedGeneration != cur.Generation {
		t.Errorf("Ready = %+v, want True (Valid) at generation %d", c, cur.Generation)
	}
	if meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled) != nil {
		t.Error("still Stalled after the fix")
	}
	if got := kstatusOf(t, cur); got != status.CurrentStatus {
		t.Errorf("kstatus = %s, want Current", got)
	}
	if e := <-rec.Events; !strings.HasPrefix(e, "Normal Valid") {
		t.Errorf("event %q, want a Normal Valid", e)
	}
}

func ptr(s string) *string { return &s }

func kstatusOf(t *testing.T, obj runtime.Object) status.Status { return testenv.Kstatus(t, obj) }
