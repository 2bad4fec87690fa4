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
	clocktesting "k8s.io/utils/clock/testing"
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

// TestTemplateGrantsCoverRuns: a template whose step requests a grant that does not exist, then a
// grant that names the template as a workflow (which covers none of its runs: they are named by
// whoever runs them), is Stalled, saying why and what would cover them; a change of the grant
// wakes it (grantToTemplates); once the grant selects the template's runs by their label it is
// Ready, looked at again when the grant ends, and then Stalled with reason GrantExpired.
func TestTemplateGrantsCoverRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := env.Namespace(t)
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: backup}
spec:
  steps:
  - {name: dump, image: example.com/dump:1, credentials: [db-password]}
  - {name: upload, image: example.com/upload:1, dependsOn: [dump]}
`), tpl); err != nil {
		t.Fatal(err)
	}
	tpl.Namespace = ns
	if err := env.Client.Create(ctx, tpl); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	rec := events.NewFakeRecorder(10)
	r := &Reconciler{Client: env.Client, Recorder: rec, Clock: clk}
	reconcile := func() (*custodyv1alpha1.WorkflowTemplate, ctrl.Result) {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tpl)})
		if err != nil {
			t.Fatal(err)
		}
		cur := &custodyv1alpha1.WorkflowTemplate{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tpl), cur); err != nil {
			t.Fatal(err)
		}
		return cur, res
	}
	stalled := func(cur *custodyv1alpha1.WorkflowTemplate, reason string, message ...string) {
		t.Helper()
		c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled)
		ready := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady)
		if c == nil || c.Reason != reason || ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != reason {
			t.Fatalf("Stalled = %+v, Ready = %+v, want both %s", c, ready, reason)
		}
		t.Logf("Stalled %s: %s", c.Reason, c.Message)
		for _, m := range message {
			if !strings.Contains(c.Message, m) {
				t.Errorf("Stalled message %q, want %q in it", c.Message, m)
			}
		}
		if got := kstatusOf(t, cur); got != status.FailedStatus {
			t.Errorf("kstatus = %s, want Failed", got)
		}
	}

	cur, _ := reconcile()
	stalled(cur, custodyv1alpha1.ReasonGrantNotFound, `step "dump" of its runs will wait until this changes: CredentialGrant db-password does not exist`)
	if e := <-rec.Events; !strings.HasPrefix(e, "Warning GrantNotFound") {
		t.Errorf("event %q, want a Warning GrantNotFound", e)
	}

	ends := metav1.NewTime(now.Add(time.Hour))
	g := &custodyv1alpha1.CredentialGrant{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: db-password}
spec:
  subjects: [{workflowName: backup, steps: [dump]}]
  credential: {secret: {name: db, keys: [password]}}
`), g); err != nil {
		t.Fatal(err)
	}
	g.Namespace, g.Spec.ExpiresAt = ns, &ends
	if err := env.Client.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	if woken := r.grantToTemplates(ctx, g); len(woken) != 1 || woken[0].Name != "backup" {
		t.Errorf("a change of the grant wakes %v, want the template backup", woken)
	}
	cur, _ = reconcile()
	stalled(cur, custodyv1alpha1.ReasonGrantNotCovered, "custody.dev/template=backup")

	g.Spec.Subjects = []custodyv1alpha1.GrantSubject{{WorkflowSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{custodyv1alpha1.LabelTemplate: "backup"}}, Steps: []string{"dump"}}}
	if err := env.Client.Update(ctx, g); err != nil {
		t.Fatal(err)
	}
	cur, res := reconcile()
	if c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue ||
		meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled) != nil {
		t.Errorf("conditions %+v, want Ready and not Stalled once the grant covers the runs", cur.Status.Conditions)
	}
	if want := time.Hour + time.Second; res.RequeueAfter != want {
		t.Errorf("requeue after %s, want %s (when the grant ends)", res.RequeueAfter, want)
	}

	clk.SetTime(now.Add(2 * time.Hour))
	cur, _ = reconcile()
	stalled(cur, custodyv1alpha1.ReasonGrantExpired, "CredentialGrant db-password expired at 2026-12-02T13:00:00Z")
}
