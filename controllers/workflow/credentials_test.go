package workflow

// CredentialGrant stories on envtest, whose kube-apiserver enforces RBAC: what a step attempt may
// do is asked of the API server itself with SubjectAccessReviews.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/controllers/credentialgrant"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/testenv"
)

// grant creates a CredentialGrant from YAML in ns.
func grant(t *testing.T, ns, manifest string) *custodyv1alpha1.CredentialGrant {
	t.Helper()
	g := &custodyv1alpha1.CredentialGrant{}
	if err := yaml.UnmarshalStrict([]byte(manifest), g); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	g.Namespace = ns
	if err := env.Client.Create(ctxT(t), g); err != nil {
		t.Fatalf("creating grant: %v", err)
	}
	return g
}

// waitGrantWarning waits for a Warning Event of reason on the grant whose note says note.
func waitGrantWarning(t *testing.T, g *custodyv1alpha1.CredentialGrant, reason, note string) {
	t.Helper()
	eventually(t, "a "+reason+" Event on the grant", func() error {
		var list eventsv1.EventList
		if err := env.Client.List(ctxT(t), &list, client.InNamespace(g.Namespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == g.Name && e.Reason == reason && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, note) {
				return nil
			}
		}
		return errorf("none among %d Events", len(list.Items))
	})
}

// suspend sets or lifts a grant's kill switch.
func suspend(t *testing.T, g *custodyv1alpha1.CredentialGrant, suspended bool) {
	t.Helper()
	eventually(t, "grant update", func() error {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			return err
		}
		cur.Spec.Suspended = suspended
		return env.Client.Update(ctxT(t), cur)
	})
}

// configMapReader creates the Role the grants of these tests bind.
func configMapReader(t *testing.T, ns string) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "cm-reader", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}}
	if err := env.Client.Create(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
}

// can asks the API server whether a ServiceAccount may do verb on configmaps in ns.
func can(t *testing.T, ns, sa, verb string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + ns + ":" + sa,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "configmaps"},
	}}
	if err := env.Client.Create(ctxT(t), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// waitCan waits until the ServiceAccount may (or may not) get configmaps.
func waitCan(t *testing.T, ns, sa string, want bool) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s may get configmaps: %v", sa, want), func() error {
		if got := can(t, ns, sa, "get"); got != want {
			return fmt.Errorf("allowed=%v", got)
		}
		return nil
	})
}

func credentialOf(wf *custodyv1alpha1.Workflow, step string) custodyv1alpha1.IssuedCredential {
	st := stepOf(wf, step)
	if len(st.Credentials) != 1 {
		return custodyv1alpha1.IssuedCredential{}
	}
	return st.Credentials[0]
}

// TestCredentials_kubernetesRoleOnlyWhileTheStepRuns: the attempt's ServiceAccount may use the
// role's verbs exactly while the step runs, never the verbs the role lacks, and the pod gets an
// audience-bound, expiring token in the step container only.
func TestCredentials_kubernetesRoleOnlyWhileTheStepRuns(t *testing.T) {
	t.Parallel()
	ns := setup(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	configMapReader(t, ns)
	grant(t, ns, `
metadata: {name: read-config}
spec:
  subjects: [{workflowName: deploy, steps: [apply]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader, audience: vault.example.com}}
  ttl: 20m`)
	manifest := `
metadata: {name: deploy}
spec:
  steps:
  - {name: prepare, image: example.com/w:1}
  - {name: apply, image: example.com/w:1, credentials: [read-config], dependsOn: [prepare]}
  - {name: report, image: example.com/w:1, dependsOn: [apply]}`
	wf := apply(t, ns, manifest)
	// Before the step starts, the ServiceAccount its attempt will use may do nothing.
	future := jobspec.Name("deploy", string(get(t, wf).UID), "apply", 1)
	waitStep(t, wf, "prepare", custodyv1alpha1.StepRunning)
	if can(t, ns, future, "get") {
		t.Error("the step's ServiceAccount may read before the step started")
	}
	succeed(t, wf, "prepare", 1, "")
	job := jobOf(t, wf, "apply", 1)
	if job.Spec.Template.Spec.ServiceAccountName != future {
		t.Fatalf("ServiceAccount %s, want %s", job.Spec.Template.Spec.ServiceAccountName, future)
	}
	sa := job.Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, sa, true)
	if can(t, ns, sa, "delete") || can(t, ns, sa, "create") {
		t.Error("the step may use verbs its role lacks")
	}
	cur := waitStep(t, wf, "apply", custodyv1alpha1.StepRunning)
	c := credentialOf(cur, "apply")
	if c.Grant != "read-config" || c.Kind != custodyv1alpha1.CredentialKindKubernetesRole || c.Attempt != 1 ||
		!strings.HasPrefix(c.Resource, "RoleBinding/") || c.RevokedAt != nil || c.ExpiresAt == nil ||
		c.ExpiresAt.Sub(c.IssuedAt.Time) != 20*time.Minute {
		t.Errorf("credential record %+v", c)
	}
	vols, m := held(job.Spec.Template.Spec)
	if len(vols) != 1 || vols[0].Projected == nil {
		t.Fatalf("volumes %+v, want one projected token", vols)
	}
	tok := vols[0].Projected.Sources[0].ServiceAccountToken
	if tok == nil || tok.Audience != "vault.example.com" || *tok.ExpirationSeconds != 1200 {
		t.Errorf("token projection %+v, want audience vault.example.com and 1200 s", tok)
	}
	if len(m) != 1 || !m[0].ReadOnly || m[0].MountPath != credentials.MountRoot+"/read-config" {
		t.Errorf("mounts %+v", m)
	}
	// The other step requests nothing and gets nothing.
	succeed(t, wf, "apply", 1, "")
	waitCan(t, ns, sa, false)
	cur = waitStep(t, wf, "report", custodyv1alpha1.StepRunning)
	if c := credentialOf(cur, "apply"); c.RevokedAt == nil {
		t.Errorf("the credential of the ended attempt is not recorded as revoked: %+v", c)
	}
	report := jobOf(t, wf, "report", 1)
	if vols, _ := held(report.Spec.Template.Spec); len(vols) != 0 || can(t, ns, report.Spec.Template.Spec.ServiceAccountName, "get") {
		t.Error("a step without credentials got some")
	}
	succeed(t, wf, "report", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	var rbs rbacv1.RoleBindingList
	if err := env.Client.List(ctxT(t), &rbs, client.InNamespace(ns)); err != nil || len(rbs.Items) != 0 {
		t.Errorf("%d RoleBindings left (%v)", len(rbs.Items), err)
	}
	reasons := eventReasons(t, wf)
	if reasons[custodyv1alpha1.ReasonCredentialIssued] != 1 || reasons[custodyv1alpha1.ReasonCredentialRevoked] != 1 {
		t.Errorf("events %v", reasons)
	}
	eventually(t, "finalizer released", func() error {
		if hasFinalizer(t, wf) {
			return fmt.Errorf("finalizer still there")
		}
		return nil
	})
}

// TestCredentials_forEachItemsHoldTheirOwn: a grant that names a forEach step covers each item: each
// item's attempt holds its own binding while it runs and loses it when it ends, whatever the
// other items do; a grant that names one item covers that item only.
func TestCredentials_forEachItemsHoldTheirOwn(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	g := grant(t, ns, `
metadata: {name: read-config}
spec:
  subjects: [{workflowName: rollout, steps: [deploy]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	grant(t, ns, `
metadata: {name: eu-only}
spec:
  subjects: [{workflowName: rollout, steps: [audit-eu]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	wf := apply(t, ns, `
metadata: {name: rollout}
spec:
  steps:
  - {name: deploy, image: example.com/d:1, forEach: [eu, us], credentials: [read-config]}
  - {name: audit, image: example.com/a:1, forEach: [eu, us], credentials: [eu-only]}`)
	eu, us := jobOf(t, wf, "deploy-eu", 1), jobOf(t, wf, "deploy-us", 1)
	saEU, saUS := eu.Spec.Template.Spec.ServiceAccountName, us.Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, saEU, true)
	waitCan(t, ns, saUS, true)
	succeed(t, wf, "deploy-eu", 1, "")
	waitCan(t, ns, saEU, false) // revoked with the item's attempt, while the other item holds its own
	if !can(t, ns, saUS, "get") {
		t.Error("deploy-us lost its binding when deploy-eu ended")
	}
	succeed(t, wf, "deploy-us", 1, "")
	waitCan(t, ns, saUS, false)

	// The grant for one item: audit-eu holds it, audit-us waits, saying why.
	jobOf(t, wf, "audit-eu", 1)
	eventually(t, "audit-us to wait for a grant that names another item", func() error {
		st := stepOf(get(t, wf), "audit-us")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantNotCovered {
			return fmt.Errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	// The binding goes before the status that records its revocation is saved.
	eventually(t, "each item's own record, revoked", func() error {
		cur := get(t, wf)
		for _, step := range []string{"deploy-eu", "deploy-us"} {
			if c := recordOf(cur, step, g.Name); c.Grant != g.Name || c.RevokedAt == nil {
				return errorf("%s's record of %s: %+v, want issued and revoked", step, g.Name, c)
			}
		}
		return nil
	})
	cancelRun(t, wf)
	waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
}

// TestCredentials_stepWaitsForAUsableGrant: a step does not start while its grant is missing,
// does not cover it, is suspended or waits for approval; it says so, and starts once it may.
func TestCredentials_stepWaitsForAUsableGrant(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	wf := apply(t, ns, `
metadata: {name: waits, labels: {team: payments}}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [later]}`)
	waitReason := func(reason string) {
		t.Helper()
		eventually(t, "step a waits with "+reason, func() error {
			st := stepOf(get(t, wf), "a")
			if st.Phase != custodyv1alpha1.StepPending || st.Reason != reason || !strings.Contains(st.Message, "later") {
				return fmt.Errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
			}
			return nil
		})
	}
	waitReason(custodyv1alpha1.ReasonGrantNotFound)
	// A step with a timeout gives up waiting when it passes.
	impatient := apply(t, ns, `
metadata: {name: impatient}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [never], timeout: 2s}`)
	cur := waitStep(t, impatient, "a", custodyv1alpha1.StepFailed)
	if st := stepOf(cur, "a"); st.Reason != custodyv1alpha1.ReasonGrantNotFound || !strings.Contains(st.Message, "never") {
		t.Errorf("step failed with %s: %s", st.Reason, st.Message)
	}
	waitPhase(t, impatient, custodyv1alpha1.WorkflowFailed)
	g := grant(t, ns, `
metadata: {name: later}
spec:
  subjects: [{workflowSelector: {matchLabels: {team: other}}, steps: [a]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}
  approval: {required: true, approvers: {users: [alice]}}
  suspended: true`)
	waitReason(custodyv1alpha1.ReasonGrantNotCovered)
	update := func(f func(*custodyv1alpha1.CredentialGrant)) {
		t.Helper()
		eventually(t, "grant update", func() error {
			cur := &custodyv1alpha1.CredentialGrant{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			f(cur)
			return env.Client.Update(ctxT(t), cur)
		})
	}
	update(func(g *custodyv1alpha1.CredentialGrant) {
		g.Spec.Subjects[0].WorkflowSelector.MatchLabels["team"] = "payments"
	})
	waitReason(custodyv1alpha1.ReasonGrantSuspended)
	update(func(g *custodyv1alpha1.CredentialGrant) { g.Spec.Suspended = false })
	waitReason(custodyv1alpha1.ReasonGrantNotApproved)
	if len(jobs(t, wf)) != 0 {
		t.Fatal("a Job exists for a step whose grant is not usable")
	}
	update(func(g *custodyv1alpha1.CredentialGrant) {
		g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"alice"}`}
	})
	waitStep(t, wf, "a", custodyv1alpha1.StepRunning)
	eventually(t, "grant status", func() error {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			return err
		}
		if cur.Status.Approval == nil || cur.Status.Approval.ApprovedBy != "alice" || cur.Status.Active != 1 ||
			len(cur.Status.ActiveIssuances) != 1 || cur.Status.ActiveIssuances[0].Workflow != "waits" {
			return fmt.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	if reasons := eventReasons(t, wf); reasons[custodyv1alpha1.ReasonGrantNotFound] != 1 || reasons[custodyv1alpha1.ReasonGrantSuspended] != 1 {
		t.Errorf("events %v, want one per reason the step waited for", reasons)
	}
}

// TestCredentials_suspendAndTTLRevokeMidStep: suspending a grant revokes a running step's
// credential at once; a retry gets a fresh issuance; a ttl revokes even while the step runs.
func TestCredentials_suspendAndTTLRevokeMidStep(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	secret(t, ns, "api", true, map[string]string{"token": "t"})
	g := grant(t, ns, `
metadata: {name: role}
spec:
  subjects: [{workflowName: kill, steps: [a]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	grant(t, ns, `
metadata: {name: brief}
spec:
  subjects: [{workflowName: kill, steps: [a]}]
  credential: {secret: {name: api, keys: [token]}}
  ttl: 1m`)
	wf := apply(t, ns, `
metadata: {name: kill}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [role, brief], retries: {limit: 1, backoff: {duration: 1s}}}`)
	job1 := jobOf(t, wf, "a", 1)
	sa1 := job1.Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, sa1, true)

	suspend(t, g, true)
	waitCan(t, ns, sa1, false)
	eventually(t, "revocation recorded", func() error {
		if c := recordOf(get(t, wf), "a", "role"); c.RevokedAt == nil {
			return fmt.Errorf("credential %+v", c)
		}
		return nil
	})
	if c := recordOf(get(t, wf), "a", "brief"); c.RevokedAt != nil {
		t.Errorf("suspending one grant revoked another: %+v", c)
	}
	// The attempt fails; its retry waits while the grant is suspended, then gets its own binding.
	fail(t, wf, "a", 1)
	eventually(t, "retry waits for the suspended grant", func() error {
		st := stepOf(get(t, wf), "a")
		if st.Reason != custodyv1alpha1.ReasonGrantSuspended {
			return fmt.Errorf("%s %s", st.Phase, st.Reason)
		}
		return nil
	})
	suspend(t, g, false)
	job2 := jobOf(t, wf, "a", 2)
	sa2 := job2.Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, sa2, true)
	if can(t, ns, sa1, "get") {
		t.Error("attempt 1's ServiceAccount regained access")
	}
	// The binding works as soon as it exists; the status that records it is saved at the end of
	// the same reconcile, a moment later.
	var c custodyv1alpha1.IssuedCredential
	eventually(t, "attempt 2's credential recorded", func() error {
		if c = recordOf(get(t, wf), "a", "brief"); c.Attempt != 2 || c.RevokedAt != nil || c.ExpiresAt == nil {
			return fmt.Errorf("attempt 2's credential %+v", c)
		}
		return nil
	})
	// Each issuance has its own Event, about the step and related to its grant, although both
	// grants of an attempt are issued by the same reconcile.
	eventually(t, "an Event per issued credential", func() error {
		var list eventsv1.EventList
		if err := env.Client.List(ctxT(t), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var got []string
		for _, e := range list.Items {
			if e.Reason == custodyv1alpha1.ReasonCredentialIssued && e.Series == nil && e.Related != nil &&
				e.Related.Kind == "CredentialGrant" && e.Regarding.FieldPath == "status.steps{a}" {
				got = append(got, e.Related.Name+": "+e.Note)
			}
		}
		slices.Sort(got)
		want := []string{
			"brief: Step a attempt 1: issued Secret credential of grant brief",
			"brief: Step a attempt 2: issued Secret credential of grant brief",
			"role: Step a attempt 1: issued KubernetesRole credential of grant role",
			"role: Step a attempt 2: issued KubernetesRole credential of grant role",
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("CredentialIssued Events %q, want %q", got, want)
		}
		return nil
	})
	// The secret grant's ttl (1m) revokes its copy while the step still runs.
	_, copyName, _ := cutResource(c.Resource)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: copyName}, &corev1.Secret{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy outlived its ttl (%v)", err)
		}
		time.Sleep(time.Second)
	}
	if time.Now().Before(c.ExpiresAt.Add(-2 * time.Second)) {
		t.Errorf("revoked at %s, before its expiry %s", time.Now(), c.ExpiresAt)
	}
	cur := get(t, wf)
	if st := stepOf(cur, "a"); st.Phase != custodyv1alpha1.StepRunning {
		t.Errorf("the step is %s; the ttl must revoke the credential, not end the step", st.Phase)
	}
	if !can(t, ns, sa2, "get") || recordOf(cur, "a", "role").RevokedAt != nil {
		t.Error("the ttl of one grant revoked another")
	}
}

// TestCredentials_unrecordedBindingIsRevoked: issuance creates a step's RoleBinding before the
// status that records it is saved. When that save is lost (the controller killed in between, as
// the fault matrix does) and the attempt never starts again (the run is cancelled or times out
// first), the binding must still go: nothing else would revoke it while the Workflow exists.
func TestCredentials_unrecordedBindingIsRevoked(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	g := grant(t, ns, `
metadata: {name: role}
spec:
  subjects: [{workflowName: lost, steps: [b]}, {workflowName: lost-deleted, steps: [a, b]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	wf := apply(t, ns, `
metadata: {name: lost}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1, dependsOn: [a], credentials: [role]}`)
	wf = waitStep(t, wf, "a", custodyv1alpha1.StepRunning)
	rb, sa := unrecordedBinding(t, g, wf, "b")
	cancelRun(t, wf)
	waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
	waitCan(t, ns, sa, false)
	gone(t, rb)
	revokedEvent(t, wf, "b", "RoleBinding/"+rb.Name)

	// Nor does a deleted run leave one (this API server runs no garbage collector: whichever
	// reconcile comes first, the run's or its finalizer's, must delete it).
	deleted := apply(t, ns, `
metadata: {name: lost-deleted}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [role]}
  - {name: b, image: example.com/w:1, dependsOn: [a], credentials: [role]}`)
	deleted = waitStep(t, deleted, "a", custodyv1alpha1.StepRunning)
	if !hasFinalizer(t, deleted) {
		t.Fatal("a run whose step holds a credential has no revocation finalizer")
	}
	rb, sa = unrecordedBinding(t, g, deleted, "b")
	if err := env.Client.Delete(ctxT(t), deleted); err != nil {
		t.Fatal(err)
	}
	waitCan(t, ns, sa, false)
	gone(t, rb)
}

// TestCredentials_suspendReachesAnUnrecordedCopy: the kill switch reaches a Secret copy whose
// issuance was never recorded. A controller killed after starting an attempt (its Job and its
// copy exist) and before saving the status that records it leaves the step Pending; when the grant
// is then suspended, the step waits for it, and the copy must not stay behind meanwhile.
func TestCredentials_suspendReachesAnUnrecordedCopy(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	src := secret(t, ns, "api", true, map[string]string{"token": "t"})
	g := grant(t, ns, `
metadata: {name: api}
spec:
  subjects: [{workflowName: lost-copy, steps: [a]}]
  credential: {secret: {name: api, keys: [token]}}`)
	suspend(t, g, true)
	wf := apply(t, ns, `
metadata: {name: lost-copy}
spec:
  steps: [{name: a, image: example.com/w:1, credentials: [api]}]`)
	eventually(t, "the step waits for the suspended grant", func() error {
		if st := stepOf(get(t, wf), "a"); st.Reason != custodyv1alpha1.ReasonGrantSuspended {
			return errorf("%s %s", st.Phase, st.Reason)
		}
		return nil
	})
	// What the lost reconcile left: the attempt's Job and its copy, and no record of either.
	wf = get(t, wf)
	job := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: &wf.Spec.Steps[0], Number: 1})
	if err := env.Client.Create(ctxT(t), job); err != nil {
		t.Fatal(err)
	}
	cp := credentials.SecretCopy(g, src, metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID},
		job.Name, jobspec.Labels(wf.Name, "a", 1))
	if err := env.Client.Create(ctxT(t), cp); err != nil {
		t.Fatal(err)
	}
	touch(t, wf) // the next reconcile, as any event would bring
	gone(t, cp)
	revokedEvent(t, wf, "a", "Secret/"+cp.Name)
	if st := stepOf(get(t, wf), "a"); st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantSuspended {
		t.Errorf("step a is %s (%s), want Pending waiting for the grant", st.Phase, st.Reason)
	}
}

// revokedEvent waits for the one CredentialRevoked Event about the step, naming the resource of
// an issuance no record accounted for.
func revokedEvent(t *testing.T, wf *custodyv1alpha1.Workflow, step, resource string) {
	t.Helper()
	eventually(t, "the CredentialRevoked Event", func() error {
		got := stepEvents(t, wf, custodyv1alpha1.ReasonCredentialRevoked)[step]
		if len(got) != 1 || !strings.Contains(got[0], resource) || !strings.Contains(got[0], "no record") {
			return errorf("CredentialRevoked Events about step %s: %q, want one naming %s", step, got, resource)
		}
		return nil
	})
}

// touch changes an annotation of the workflow, which brings a reconcile.
func touch(t *testing.T, wf *custodyv1alpha1.Workflow) {
	t.Helper()
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"test.custody.dev/touched":%q}}}`, time.Now().Format(time.RFC3339Nano)))
	if err := env.Client.Patch(ctxT(t), get(t, wf), client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// unrecordedBinding leaves what a controller killed between creating a step's RoleBinding and
// saving the status that records it leaves behind: the binding of the step's first attempt, and
// no record of it. It returns the binding and the attempt's ServiceAccount, which may now read.
func unrecordedBinding(t *testing.T, g *custodyv1alpha1.CredentialGrant, wf *custodyv1alpha1.Workflow,
	step string) (*rbacv1.RoleBinding, string) {
	t.Helper()
	sa := jobspec.Name(wf.Name, string(wf.UID), step, 1)
	rb := credentials.RoleBinding(g, *metav1.NewControllerRef(wf, custodyv1alpha1.GroupVersion.WithKind("Workflow")), sa,
		wf.Namespace, jobspec.Labels(wf.Name, step, 1))
	if err := env.Client.Create(ctxT(t), rb); err != nil {
		t.Fatal(err)
	}
	waitCan(t, wf.Namespace, sa, true)
	return rb, sa
}

// gone waits until the object no longer exists.
func gone(t *testing.T, o client.Object) {
	t.Helper()
	eventually(t, o.GetName()+" deleted", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			return errorf("still there (err %v)", err)
		}
		return nil
	})
}

// recordOf returns a step's record of one grant.
func recordOf(wf *custodyv1alpha1.Workflow, step, grant string) custodyv1alpha1.IssuedCredential {
	for _, c := range stepOf(wf, step).Credentials {
		if c.Grant == grant {
			return c
		}
	}
	return custodyv1alpha1.IssuedCredential{}
}

// TestCredentials_cancelAndDeleteLeaveNothing: a cancelled workflow and a deleted one hold no
// binding afterwards.
func TestCredentials_cancelAndDeleteLeaveNothing(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	grant(t, ns, `
metadata: {name: both}
spec:
  subjects: [{workflowSelector: {matchLabels: {app: x}}, steps: [a]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	cancelled := apply(t, ns, `
metadata: {name: cancelled, labels: {app: x}}
spec:
  steps: [{name: a, image: example.com/w:1, credentials: [both]}]`)
	deleted := apply(t, ns, `
metadata: {name: deleted, labels: {app: x}}
spec:
  steps: [{name: a, image: example.com/w:1, credentials: [both]}]`)
	saC := jobOf(t, cancelled, "a", 1).Spec.Template.Spec.ServiceAccountName
	saD := jobOf(t, deleted, "a", 1).Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, saC, true)
	waitCan(t, ns, saD, true)
	kind := string(custodyv1alpha1.CredentialKindKubernetesRole)
	deletedBefore := testutil.ToFloat64(metrics.CredentialsRevoked.WithLabelValues(kind, revokedDeleted))

	cancelRun(t, cancelled)
	if err := env.Client.Delete(ctxT(t), get(t, deleted)); err != nil {
		t.Fatal(err)
	}
	waitCan(t, ns, saC, false)
	waitCan(t, ns, saD, false)
	waitPhase(t, cancelled, custodyv1alpha1.WorkflowCancelled)
	waitGone(t, deleted)
	// Other stories run alongside and may count too: at least this one.
	if d := testutil.ToFloat64(metrics.CredentialsRevoked.WithLabelValues(kind, revokedDeleted)) - deletedBefore; d < 1 {
		t.Errorf("custody_credentials_revoked_total{kind=%q,reason=%q} rose by %v, want at least 1", kind, revokedDeleted, d)
	}
	eventually(t, "no RoleBindings", func() error {
		var rbs rbacv1.RoleBindingList
		if err := env.Client.List(ctxT(t), &rbs, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(rbs.Items) != 0 {
			return fmt.Errorf("%d RoleBindings left", len(rbs.Items))
		}
		return nil
	})
}

func secret(t *testing.T, ns, name string, grantable bool, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	if grantable {
		s.Labels = map[string]string{custodyv1alpha1.LabelGrantable: "true"}
	}
	if err := env.Client.Create(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCredentials_secretCopyLivesWithTheAttempt: the attempt gets its own copy with only the
// listed keys, owned by its Job and mounted read-only into the step container; it follows a change
// of the source and is gone when the attempt ends.
func TestCredentials_secretCopyLivesWithTheAttempt(t *testing.T) {
	t.Parallel()
	ns := setup(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	src := secret(t, ns, "erp-api", true, map[string]string{"token": "s3cr3t-v1", "user": "svc-erp", "admin-token": "never"})
	g := grant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token, user], maxAge: 720h}}`)
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1, credentials: [erp]}`)
	job := jobOf(t, wf, "post", 1)
	copyName := credentials.ResourceName(job.Name, "erp")
	readCopy := func() (*corev1.Secret, error) {
		cp := &corev1.Secret{}
		return cp, env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: copyName}, cp)
	}
	eventually(t, "the copy", func() error {
		cp, err := readCopy()
		if err != nil {
			return err
		}
		if len(cp.Data) != 2 || string(cp.Data["token"]) != "s3cr3t-v1" || string(cp.Data["user"]) != "svc-erp" {
			return fmt.Errorf("copy holds keys %v", keys(cp.Data))
		}
		if len(cp.OwnerReferences) != 1 || cp.OwnerReferences[0].Kind != "Job" || cp.OwnerReferences[0].UID != job.UID {
			return fmt.Errorf("copy owners %+v, want the Job", cp.OwnerReferences)
		}
		return nil
	})
	spec := job.Spec.Template.Spec
	if vols, _ := held(spec); len(vols) != 1 || vols[0].Secret == nil || vols[0].Secret.SecretName != copyName ||
		*vols[0].Secret.DefaultMode != 0o440 {
		t.Errorf("volumes %+v", vols)
	}
	// The kubelet writes the files as root: the pod's fsGroup, the step's own group, reads them.
	if sc := spec.SecurityContext; sc.FSGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Errorf("pod security context %+v: fsGroup is not the step's group", sc)
	}
	if _, m := held(spec); len(m) != 1 || !m[0].ReadOnly || m[0].MountPath != credentials.MountRoot+"/erp" {
		t.Errorf("mounts %+v", m)
	}
	// Rotation: the source changes, the live copy follows.
	eventually(t, "source update", func() error {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(src), cur); err != nil {
			return err
		}
		cur.Data["token"] = []byte("s3cr3t-v2")
		return env.Client.Update(ctxT(t), cur)
	})
	eventually(t, "the copy follows the source", func() error {
		cp, err := readCopy()
		if err != nil {
			return err
		}
		if string(cp.Data["token"]) != "s3cr3t-v2" {
			return fmt.Errorf("copy still holds the old token")
		}
		return nil
	})
	eventually(t, "grant status", func() error {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			return err
		}
		if cur.Status.SourceChangedTime == nil || !meta.IsStatusConditionTrue(cur.Status.Conditions, custodyv1alpha1.ConditionReady) ||
			!meta.IsStatusConditionFalse(cur.Status.Conditions, custodyv1alpha1.ConditionRotationOverdue) {
			return fmt.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	succeed(t, wf, "post", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	eventually(t, "the copy is deleted", func() error {
		if _, err := readCopy(); !apierrors.IsNotFound(err) {
			return fmt.Errorf("copy still there (%w); record %+v", err, credentialOf(get(t, wf), "post"))
		}
		return nil
	})
	if c := recordOf(get(t, wf), "post", "erp"); c.RevokedAt == nil || c.Resource != "Secret/"+copyName {
		t.Errorf("record %+v", c)
	}
	if reasons := eventReasons(t, wf); reasons[custodyv1alpha1.ReasonCredentialRotated] != 1 {
		t.Errorf("events %v, want one CredentialRotated", reasons)
	}
}

// TestCredentials_resultsNeverCarryTheGrantedSecret: an attempt whose results hold the value of a
// Secret it was granted, or something shaped like a credential, fails with ResultsInvalid; the
// message names the result and the key, and the value is nowhere in the Workflow or its Events.
// A result that merely holds a short granted value (a user name) is kept.
func TestCredentials_resultsNeverCarryTheGrantedSecret(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	const password = "pa55-w0rd-for-orders"
	token := "ghp_" + strings.Repeat("Ab9", 12)
	secret(t, ns, "orders-db", true, map[string]string{"password": password, "user": "app"})
	grant(t, ns, `
metadata: {name: db}
spec:
  subjects: [{workflowSelector: {matchLabels: {app: migrate}}, steps: [migrate]}]
  credential: {secret: {name: orders-db, keys: [password, user]}}`)
	run := func(name, results string) *custodyv1alpha1.Workflow {
		t.Helper()
		wf := apply(t, ns, `
metadata: {name: `+name+`, labels: {app: migrate}}
spec:
  steps:
  - {name: migrate, image: example.com/m:1, credentials: [db], results: [{name: dsn}, {name: user}]}`)
		job := jobOf(t, wf, "migrate", 1)
		runPod(t, job, 0, results)
		finishJob(t, job, true, "")
		return wf
	}
	leak := run("leak", `{"dsn":"postgres://app:`+password+`@db/orders","user":"app"}`)
	basic := base64.StdEncoding.EncodeToString([]byte("app:" + password))
	encoded := run("encoded", `{"dsn":"Authorization: Basic `+basic+`","user":"app"}`)
	shaped := run("shaped", `{"dsn":"postgres://db/orders?token=`+token+`","user":"app"}`)
	clean := run("clean", `{"dsn":"postgres://db/orders","user":"app"}`)

	for wf, want := range map[*custodyv1alpha1.Workflow]string{
		leak:    "result dsn holds the value of key password of Secret orders-db, granted by db, which",
		encoded: "result dsn holds the value of key password of Secret orders-db, granted by db (base64-encoded), which",
		shaped:  "dsn looks like a GitHub token",
	} {
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
		st := stepOf(wf, "migrate")
		if st.Phase != custodyv1alpha1.StepFailed || st.Reason != custodyv1alpha1.StepReasonResultsInvalid || !strings.Contains(st.Message, want) {
			t.Errorf("%s: migrate %s (%s) %q, want Failed (ResultsInvalid) saying %q", wf.Name, st.Phase, st.Reason, st.Message, want)
		}
		if len(st.Results) != 0 {
			t.Errorf("%s: results %+v recorded", wf.Name, st.Results)
		}
	}
	clean = waitPhase(t, clean, custodyv1alpha1.WorkflowSucceeded)
	if got := stepOf(clean, "migrate").Results; len(got) != 2 || got[1].Name != "user" || got[1].Value != "app" {
		t.Errorf("clean: results %+v, want dsn and user kept", got)
	}
	for _, wf := range []*custodyv1alpha1.Workflow{leak, encoded, shaped} {
		raw, err := json.Marshal(get(t, wf))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), password) || strings.Contains(string(raw), basic) || strings.Contains(string(raw), "ghp_") {
			t.Errorf("%s holds a credential value: %s", wf.Name, raw)
		}
	}
	eventually(t, "the Events of the refused attempts, without the values", func() error {
		var events eventsv1.EventList
		if err := env.Client.List(ctxT(t), &events, client.InNamespace(ns)); err != nil {
			return err
		}
		refused := 0
		for _, e := range events.Items {
			if strings.Contains(e.Note, password) || strings.Contains(e.Note, basic) || strings.Contains(e.Note, "ghp_") {
				t.Fatalf("%s Event holds a credential value: %q", e.Reason, e.Note)
			}
			if strings.Contains(e.Note, "failed on attempt 1 (ResultsInvalid)") {
				refused++
			}
		}
		if refused != 3 {
			return errorf("%d Events say an attempt failed for its results, want 3", refused)
		}
		return nil
	})
}

// TestCredentials_secretSourceMustOptIn: a Secret without custody.dev/grantable=true, or one that
// exists only in another namespace, is never handed out.
func TestCredentials_secretSourceMustOptIn(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	other := env.Namespace(t)
	secret(t, ns, "plain", false, map[string]string{"token": "x"})
	secret(t, other, "elsewhere", true, map[string]string{"token": "y"})
	grant(t, ns, `
metadata: {name: plain}
spec:
  subjects: [{workflowName: optin, steps: [a]}]
  credential: {secret: {name: plain, keys: [token]}}`)
	grant(t, ns, `
metadata: {name: elsewhere}
spec:
  subjects: [{workflowName: optin, steps: [b]}]
  credential: {secret: {name: elsewhere, keys: [token]}}`)
	wf := apply(t, ns, `
metadata: {name: optin}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [plain]}
  - {name: b, image: example.com/w:1, credentials: [elsewhere]}`)
	eventually(t, "both steps wait", func() error {
		cur := get(t, wf)
		a, b := stepOf(cur, "a"), stepOf(cur, "b")
		if a.Reason != custodyv1alpha1.ReasonSourceNotGrantable || b.Reason != custodyv1alpha1.ReasonSourceNotFound {
			return fmt.Errorf("a: %s %s; b: %s %s", a.Reason, a.Message, b.Reason, b.Message)
		}
		return nil
	})
	if len(jobs(t, wf)) != 0 {
		t.Error("a Job exists for a step whose Secret did not opt in")
	}
	var copies corev1.SecretList
	if err := env.Client.List(ctxT(t), &copies, client.InNamespace(ns), client.HasLabels{credentials.LabelCopyOf}); err != nil ||
		len(copies.Items) != 0 {
		t.Errorf("%d copies exist (%v)", len(copies.Items), err)
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCredentials_secretOptOutRevokes: removing the opt-in label from a Secret revokes the live
// copies made from it.
func TestCredentials_secretOptOutRevokes(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	src := secret(t, ns, "api", true, map[string]string{"token": "t"})
	grant(t, ns, `
metadata: {name: api}
spec:
  subjects: [{workflowName: optout, steps: [a]}]
  credential: {secret: {name: api, keys: [token]}}`)
	wf := apply(t, ns, `
metadata: {name: optout}
spec:
  steps: [{name: a, image: example.com/w:1, credentials: [api]}]`)
	job := jobOf(t, wf, "a", 1)
	copyKey := client.ObjectKey{Namespace: ns, Name: credentials.ResourceName(job.Name, "api")}
	eventually(t, "the copy", func() error { return env.Client.Get(ctxT(t), copyKey, &corev1.Secret{}) })
	eventually(t, "opt-out", func() error {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(src), cur); err != nil {
			return err
		}
		delete(cur.Labels, custodyv1alpha1.LabelGrantable)
		return env.Client.Update(ctxT(t), cur)
	})
	eventually(t, "the copy is revoked", func() error {
		if err := env.Client.Get(ctxT(t), copyKey, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("copy still there (%w)", err)
		}
		if c := recordOf(get(t, wf), "a", "api"); c.RevokedAt == nil {
			return fmt.Errorf("record %+v", c)
		}
		return nil
	})
}

// TestCredentials_grantPinnedToImages: a grant whose subject names images lets a step hold the
// credential only while it runs one of them. A run of the same workflow and step with another
// image waits, saying which image; the pinned one starts and may read.
func TestCredentials_grantPinnedToImages(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	const pinned = "registry.example.com/erp-client@sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	grant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowSelector: {matchLabels: {app: invoices}}, steps: [post], images: ["registry.example.com/erp-client@sha256:*"]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	other := apply(t, ns, `
metadata: {name: tagged, labels: {app: invoices}}
spec:
  steps:
  - {name: post, image: "registry.example.com/erp-client:2.0", credentials: [erp]}`)
	fine := apply(t, ns, `
metadata: {name: pinned, labels: {app: invoices}}
spec:
  steps:
  - {name: post, image: "`+pinned+`", credentials: [erp]}`)
	cur := waitStep(t, fine, "post", custodyv1alpha1.StepRunning)
	waitCan(t, ns, stepOf(cur, "post").ServiceAccountName, true)
	eventually(t, "the tagged run to wait for the grant", func() error {
		st := stepOf(get(t, other), "post")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantNotCovered ||
			!strings.Contains(st.Message, `does not allow step post of workflow tagged to run image "registry.example.com/erp-client:2.0"`) {
			return errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	if n := len(jobs(t, other)); n != 0 {
		t.Errorf("%d Jobs for the step whose image the grant does not allow", n)
	}
}

// TestCredentials_imagePullSecretsMustOptIn: a registry credential lets the kubelet pull images
// nobody else may, so a run may pull with a Secret only once a namespace admin labelled it
// custody.dev/image-pull=true; until then its steps wait and say why, and no Job exists.
func TestCredentials_imagePullSecretsMustOptIn(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: private-image}
spec:
  imagePullSecrets: [{name: regcred}]
  steps:
  - {name: build, image: registry.internal.example/ci/build:1}
`)
	waitReason := func(words string) {
		t.Helper()
		eventually(t, "build to wait: "+words, func() error {
			st := stepOf(get(t, wf), "build")
			if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonImagePullSecretNotUsable ||
				!strings.Contains(st.Message, words) {
				return errorf("build is %s (%s): %s", st.Phase, st.Reason, st.Message)
			}
			return nil
		})
	}
	waitReason("imagePullSecret regcred does not exist in namespace " + ns)
	secret := pullSecret(t, ns, "regcred", false)
	waitReason("imagePullSecret regcred is not labelled custody.dev/image-pull=true")
	if n := len(jobs(t, wf)); n != 0 {
		t.Fatalf("%d Jobs created while the pull Secret was not usable", n)
	}
	secret.Labels = map[string]string{custodyv1alpha1.LabelImagePull: "true"}
	if err := env.Client.Update(ctxT(t), secret); err != nil {
		t.Fatal(err)
	}
	job := succeed(t, wf, "build", 1, "")
	if got := job.Spec.Template.Spec.ImagePullSecrets; len(got) != 1 || got[0].Name != "regcred" {
		t.Errorf("Job imagePullSecrets = %v, want regcred", got)
	}
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// pullSecret creates a registry Secret, opted in to being an imagePullSecret if usable.
func pullSecret(t *testing.T, ns, name string, usable bool) *corev1.Secret {
	t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	if usable {
		secret.Labels = map[string]string{custodyv1alpha1.LabelImagePull: "true"}
	}
	if err := env.Client.Create(ctxT(t), secret); err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestCredentials_ephemeralContainerEndsTheAttempt: a container added to a running step's pod
// (kubectl debug) could read the step's Secret copy and act as the step: the attempt is stopped
// (its Job deleted), fails with EphemeralContainerAdded naming the container, its image and the
// tool that added it, and its credentials are revoked at once; the retry is a new attempt, with a
// new copy, once the altered pod has stopped.
func TestCredentials_ephemeralContainerEndsTheAttempt(t *testing.T) {
	t.Parallel()
	ns := setup(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	secret(t, ns, "erp-api", true, map[string]string{"token": "s3cr3t-v1"})
	grant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`)
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1, credentials: [erp], retries: {limit: 1, backoff: {duration: 1s}}}`)
	job := jobOf(t, wf, "post", 1)
	copyOf := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.ResourceName(job.Name, "erp")}}
	eventually(t, "the copy", func() error { return env.Client.Get(ctxT(t), client.ObjectKeyFromObject(copyOf), &corev1.Secret{}) })
	pod := startPod(t, job)
	waitStep(t, wf, "post", custodyv1alpha1.StepRunning)

	addDebugContainer(t, pod)

	cur := waitStep(t, wf, "post", custodyv1alpha1.StepRetrying)
	// Status and the Retrying Event say why: what was added to which pod, by which tool (also
	// once the retry waits for that pod to stop).
	st := stepOf(cur, "post")
	if st.LastFailureReason != custodyv1alpha1.StepReasonEphemeralContainerAdded {
		t.Errorf("step post: lastFailureReason %q", st.LastFailureReason)
	}
	eventually(t, "the step's message to name the pod it waits for, and keep why", func() error {
		msg := stepOf(get(t, wf), "post").Message
		for _, want := range []string{"Attempt 1 failed (EphemeralContainerAdded: ephemeral container debugger (image busybox:1.36) was added to pod " +
			pod.Name + " by kubectl-debug", "attempt 2 starts once pod " + pod.Name + " has stopped"} {
			if !strings.Contains(msg, want) {
				return errorf("step message %q does not say %q", msg, want)
			}
		}
		return nil
	})
	gone(t, job)
	gone(t, copyOf)
	if r := recordOf(cur, "post", "erp"); r.RevokedAt == nil {
		t.Errorf("the copy's record shows no revocation: %+v", r)
	}
	eventually(t, "the Retrying Event", func() error {
		msgs := stepEvents(t, wf, custodyv1alpha1.StepReasonRetrying)["post"]
		for _, m := range msgs {
			if strings.Contains(m, "EphemeralContainerAdded") && strings.Contains(m, "debugger (image busybox:1.36)") &&
				strings.Contains(m, "to pod "+pod.Name) && strings.Contains(m, "by kubectl-debug") {
				return nil
			}
		}
		return errorf("no Retrying Event names the reason, the container, its image, the pod and the tool: %q", msgs)
	})

	// The retry waits for the altered pod to stop, then runs with a copy of its own.
	removePod(t, pod)
	job2 := jobOf(t, wf, "post", 2)
	eventually(t, "attempt 2's copy", func() error {
		return env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: credentials.ResourceName(job2.Name, "erp")}, &corev1.Secret{})
	})
}

// TestCredentials_onRevokeStopsTheStep: a grant whose onRevoke is StopStep stops the steps it is
// taken from while they run (a step that read a Secret's value would otherwise go on using it);
// one that leaves it unset lets them run on without it. The policy is the grant's while the
// credential is live, and its record keeps it, so that deleting the grant still stops the step.
func TestCredentials_onRevokeStopsTheStep(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	secret(t, ns, "erp-api", true, map[string]string{"token": "s3cr3t-v1"})
	secret(t, ns, "notes-api", true, map[string]string{"token": "n0tes-v1"})
	erp := grant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  onRevoke: StopStep`)
	notes := grant(t, ns, `
metadata: {name: notes}
spec:
  subjects: [{workflowName: pay, steps: [note]}]
  credential: {secret: {name: notes-api, keys: [token]}}`)
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1, credentials: [erp], retries: {limit: 1, backoff: {duration: 1s}}}
  - {name: note, image: example.com/w:1, credentials: [notes]}`)
	post, note := jobOf(t, wf, "post", 1), jobOf(t, wf, "note", 1)
	postPod := startPod(t, post)
	startPod(t, note)
	waitStep(t, wf, "post", custodyv1alpha1.StepRunning)
	cur := waitStep(t, wf, "note", custodyv1alpha1.StepRunning)
	if c := recordOf(cur, "post", "erp"); c.OnRevoke != custodyv1alpha1.RevokeStopStep {
		t.Errorf("post's record does not say what a revocation does: %+v", c)
	}

	suspend(t, erp, true)
	suspend(t, notes, true)
	cur = waitStep(t, wf, "post", custodyv1alpha1.StepRetrying)
	st := stepOf(cur, "post")
	if st.LastFailureReason != custodyv1alpha1.ReasonCredentialRevoked ||
		!strings.Contains(st.Message, "its Secret credential of grant erp was revoked (GrantWithdrawn: the grant was suspended) and the grant's onRevoke is StopStep") {
		t.Errorf("step post: %s %q", st.LastFailureReason, st.Message)
	}
	gone(t, post)
	eventually(t, "a Retrying Event that says why", func() error {
		for _, m := range stepEvents(t, wf, custodyv1alpha1.StepReasonRetrying)["post"] {
			if strings.Contains(m, "CredentialRevoked") && strings.Contains(m, "grant erp") {
				return nil
			}
		}
		return errorf("none")
	})
	// The grant without the policy: its step runs on, without its copy.
	eventually(t, "note's copy revoked", func() error {
		if c := recordOf(get(t, wf), "note", "notes"); c.RevokedAt == nil {
			return errorf("record %+v", c)
		}
		return nil
	})
	if st := stepOf(get(t, wf), "note"); st.Phase != custodyv1alpha1.StepRunning {
		t.Errorf("step note is %s (%s): its grant does not stop it", st.Phase, st.Reason)
	}
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(note), &batchv1.Job{}); err != nil {
		t.Errorf("step note's Job: %v", err)
	}
	// Once the stopped pod is gone the retry waits for the suspended grant, like any attempt.
	removePod(t, postPod)
	eventually(t, "the retry to wait for the grant", func() error {
		if st := stepOf(get(t, wf), "post"); st.Reason != custodyv1alpha1.ReasonGrantSuspended {
			return errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})

	// A live credential's record follows its grant's policy, and keeps it when the grant goes.
	suspend(t, erp, false)
	post2 := jobOf(t, wf, "post", 2)
	startPod(t, post2)
	waitStep(t, wf, "post", custodyv1alpha1.StepRunning)
	for _, p := range []custodyv1alpha1.RevokePolicy{custodyv1alpha1.RevokeContinue, custodyv1alpha1.RevokeStopStep} {
		eventually(t, "erp's onRevoke to be "+string(p), func() error {
			cur := &custodyv1alpha1.CredentialGrant{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(erp), cur); err != nil {
				return err
			}
			cur.Spec.OnRevoke = p
			return env.Client.Update(ctxT(t), cur)
		})
		eventually(t, "attempt 2's record to say "+string(p), func() error {
			if c := recordOf(get(t, wf), "post", "erp"); c.Attempt != 2 || c.OnRevoke != p {
				return errorf("record %+v", c)
			}
			return nil
		})
	}
	if err := env.Client.Delete(ctxT(t), erp); err != nil {
		t.Fatal(err)
	}
	cur = waitStep(t, wf, "post", custodyv1alpha1.StepFailed)
	if st := stepOf(cur, "post"); st.Reason != custodyv1alpha1.ReasonRetriesExhausted ||
		!strings.Contains(st.Message, "(CredentialRevoked): its Secret credential of grant erp was revoked (GrantWithdrawn: the grant was deleted)") {
		t.Errorf("step post: %s %q", st.Reason, st.Message)
	}
	gone(t, post2)
}

// TestCredentials_platformDefaultOnRevoke: with the manager's --grant-on-revoke=StopStep, a grant
// that sets no onRevoke stops the steps it is revoked from, its status says the policy in force,
// and a grant that says Continue keeps its steps running.
func TestCredentials_platformDefaultOnRevoke(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.DefaultOnRevoke = custodyv1alpha1.RevokeStopStep },
		func(r *credentialgrant.Reconciler) { r.DefaultOnRevoke = custodyv1alpha1.RevokeStopStep })
	secret(t, ns, "erp-api", true, map[string]string{"token": "s3cr3t-v1"})
	erp := grant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`)
	notes := grant(t, ns, `
metadata: {name: notes}
spec:
  subjects: [{workflowName: pay, steps: [note]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  onRevoke: Continue`)
	for g, want := range map[*custodyv1alpha1.CredentialGrant]custodyv1alpha1.RevokePolicy{
		erp: custodyv1alpha1.RevokeStopStep, notes: custodyv1alpha1.RevokeContinue} {
		eventually(t, "grant "+g.Name+"'s status.onRevoke", func() error {
			cur := &custodyv1alpha1.CredentialGrant{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			if cur.Status.OnRevoke != want {
				return errorf("status.onRevoke %q, want %q", cur.Status.OnRevoke, want)
			}
			return nil
		})
	}
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1, credentials: [erp]}
  - {name: note, image: example.com/w:1, credentials: [notes]}`)
	post, note := jobOf(t, wf, "post", 1), jobOf(t, wf, "note", 1)
	startPod(t, post)
	startPod(t, note)
	cur := waitStep(t, wf, "post", custodyv1alpha1.StepRunning)
	if c := recordOf(cur, "post", "erp"); c.OnRevoke != custodyv1alpha1.RevokeStopStep {
		t.Errorf("post's record: %+v, want the platform's StopStep", c)
	}
	suspend(t, erp, true)
	suspend(t, notes, true)
	cur = waitStep(t, wf, "post", custodyv1alpha1.StepFailed)
	if st := stepOf(cur, "post"); !strings.Contains(st.Message, "grant erp was revoked (GrantWithdrawn: the grant was suspended)") {
		t.Errorf("step post: %s %q", st.Reason, st.Message)
	}
	gone(t, post)
	eventually(t, "note's copy revoked", func() error {
		if c := recordOf(get(t, wf), "note", "notes"); c.RevokedAt == nil {
			return errorf("record %+v", c)
		}
		return nil
	})
	if st := stepOf(get(t, wf), "note"); st.Phase != custodyv1alpha1.StepRunning {
		t.Errorf("step note is %s (%s): its grant says Continue", st.Phase, st.Reason)
	}
}

// TestCredentials_grantExpiresAt: a grant's expiresAt ends what it issued (an issuance expires
// with the grant, before its ttl; one made before the end was moved earlier goes at the new end)
// and keeps a step from getting it again; moving the end later lets the step have it.
func TestCredentials_grantExpiresAt(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	secret(t, ns, "api", true, map[string]string{"token": "t"})
	end := time.Now().Add(12 * time.Second).UTC().Truncate(time.Second) // room for a busy machine to start the step first
	role := grant(t, ns, `
metadata: {name: incident}
spec:
  subjects: [{workflowName: fix, steps: [a]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}
  expiresAt: "`+end.Format(time.RFC3339)+`"`)
	api := grant(t, ns, `
metadata: {name: api}
spec:
  subjects: [{workflowName: fix, steps: [a]}]
  credential: {secret: {name: api, keys: [token]}}
  expiresAt: "`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"`)
	setEnd := func(g *custodyv1alpha1.CredentialGrant, at time.Time) {
		t.Helper()
		eventually(t, "grant update", func() error {
			cur := &custodyv1alpha1.CredentialGrant{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			cur.Spec.ExpiresAt = &metav1.Time{Time: at}
			return env.Client.Update(ctxT(t), cur)
		})
	}
	wf := apply(t, ns, `
metadata: {name: fix}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [incident, api], retries: {limit: 1, backoff: {duration: 1s}}}`)
	sa1 := jobOf(t, wf, "a", 1).Spec.Template.Spec.ServiceAccountName
	waitCan(t, ns, sa1, true)
	// The binding works as soon as it exists; the status that records it is saved a moment later.
	eventually(t, "the role's issuance recorded", func() error {
		if c := recordOf(get(t, wf), "a", "incident"); c.ExpiresAt == nil || !c.ExpiresAt.UTC().Equal(end) {
			return errorf("the role's issuance expires %v, want with the grant at %s (before its 15m ttl)", c.ExpiresAt, end)
		}
		return nil
	})
	waitCan(t, ns, sa1, false)
	if time.Now().Before(end) {
		t.Errorf("the role was revoked at %s, before the grant's end %s", time.Now(), end)
	}
	eventually(t, "the role's revocation recorded", func() error {
		if c := recordOf(get(t, wf), "a", "incident"); c.RevokedAt == nil || c.RevocationReason != "Expired" {
			return errorf("record %+v, want revoked, Expired", c)
		}
		return nil
	})
	// The Secret grant's end is moved earlier than its issuance's own (15m ttl): it goes then.
	setEnd(api, time.Now().Add(2*time.Second))
	eventually(t, "the copy revoked at the grant's new end", func() error {
		if c := recordOf(get(t, wf), "a", "api"); c.RevokedAt == nil || c.RevocationReason != "GrantExpired" {
			return errorf("record %+v, want revoked, GrantExpired", c)
		}
		return nil
	})
	if st := stepOf(get(t, wf), "a"); st.Phase != custodyv1alpha1.StepRunning {
		t.Errorf("the step is %s; a grant's end revokes its credential, not the step", st.Phase)
	}
	// A retry waits for a grant that ended, saying so.
	fail(t, wf, "a", 1)
	eventually(t, "the retry waits for the ended grant", func() error {
		st := stepOf(get(t, wf), "a")
		if st.Reason != custodyv1alpha1.ReasonGrantExpired || !strings.Contains(st.Message, "CredentialGrant incident expired at "+
			end.Format(time.RFC3339)+" (spec.expiresAt)") {
			return errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	setEnd(role, time.Now().Add(time.Hour))
	setEnd(api, time.Now().Add(time.Hour))
	waitCan(t, ns, jobOf(t, wf, "a", 2).Spec.Template.Spec.ServiceAccountName, true)
}

// TestCredentials_grantUnused: a grant that issues nothing for longer than the manager's
// --grant-unused-after turns Unused (condition, Warning Event, the custody_grants gauge); a step
// that receives it makes it used again, and the clock starts over from that issuance.
func TestCredentials_grantUnused(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	const after = 4 * time.Second
	startController(t, ns, func(g *credentialgrant.Reconciler) { g.UnusedAfter = after })
	secret(t, ns, "api", true, map[string]string{"token": "t"})
	g := grant(t, ns, `
metadata: {name: api}
spec:
  subjects: [{workflowName: nightly, steps: [call]}]
  credential: {secret: {name: api, keys: [token]}}`)
	waitUnused := func(status metav1.ConditionStatus, message string) *custodyv1alpha1.CredentialGrant {
		t.Helper()
		cur := &custodyv1alpha1.CredentialGrant{}
		eventually(t, fmt.Sprintf("Unused=%s (%s)", status, message), func() error {
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionUnused)
			if c == nil || c.Status != status || !strings.Contains(c.Message, message) {
				return errorf("Unused %+v", c)
			}
			return nil
		})
		return cur
	}
	waitUnused(metav1.ConditionFalse, "Since it was created at")
	created := time.Now()
	cur := waitUnused(metav1.ConditionTrue, "Issued nothing since it was created at")
	if time.Since(created) < after-time.Second {
		t.Errorf("Unused after %s, want %s", time.Since(created), after)
	}
	if !meta.IsStatusConditionTrue(cur.Status.Conditions, custodyv1alpha1.ConditionReady) {
		t.Errorf("an unused grant still issues: conditions %+v", cur.Status.Conditions)
	}
	waitGrantWarning(t, g, custodyv1alpha1.ReasonNotUsedRecently, "access nobody uses is access to take away")
	// No other story makes a grant Unused.
	if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionUnused); n != 1 {
		t.Errorf(`custody_grants{condition="Unused"} = %v, want 1`, n)
	}

	wf := apply(t, ns, `
metadata: {name: nightly}
spec:
  steps: [{name: call, image: example.com/c:1, credentials: [api]}]`)
	succeed(t, wf, "call", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	issued := recordOf(get(t, wf), "call", "api").IssuedAt
	cur = waitUnused(metav1.ConditionFalse, "Since it last issued a credential at "+issued.UTC().Format(time.RFC3339))
	if cur.Status.LastIssuedTime == nil || !cur.Status.LastIssuedTime.Equal(&issued) {
		t.Errorf("lastIssuedTime %v, want %v", cur.Status.LastIssuedTime, issued)
	}
	if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionUnused); n != 0 {
		t.Errorf(`custody_grants{condition="Unused"} = %v once the grant was used, want 0`, n)
	}
	waitUnused(metav1.ConditionTrue, "Issued nothing since it last issued a credential at "+issued.UTC().Format(time.RFC3339))
}

// TestCredentials_approvalLapses: an approval under approval.validFor stands until it lapses; in
// the last quarter of validFor it is due for review (ReviewDue=True, a Warning Event, the
// custody_grants gauge) while the grant still issues; from the lapse the grant issues nothing
// (Approved=False ApprovalExpired, an Event, steps wait GrantNotApproved saying so) while what it
// issued before runs to its end; a new approval lets the waiting step start and ends the review.
func TestCredentials_approvalLapses(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	secret(t, ns, "api", true, map[string]string{"token": "t"})
	approve := func(at time.Time) string {
		return fmt.Sprintf(`{"approvedBy":"bob","approvedAt":%q}`, at.UTC().Format(time.RFC3339))
	}
	// Approved 59m50s ago for an hour: it lapses 10 s from now, and its review window (the last
	// 15 minutes) is open.
	lapse := time.Now().Add(10 * time.Second).UTC().Truncate(time.Second)
	g := grant(t, ns, `
metadata: {name: api, annotations: {approve.custody.dev/grant: '`+approve(lapse.Add(-time.Hour))+`'}}
spec:
  subjects: [{workflowSelector: {matchLabels: {app: sync}}, steps: [call]}]
  credential: {secret: {name: api, keys: [token]}}
  approval: {required: true, approvers: {users: [bob]}, validFor: 1h}`)
	condition := func(typ string) func(want metav1.ConditionStatus, reason, message string) {
		return func(want metav1.ConditionStatus, reason, message string) {
			t.Helper()
			eventually(t, fmt.Sprintf("%s=%s (%s)", typ, want, reason), func() error {
				cur := &custodyv1alpha1.CredentialGrant{}
				if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
					return err
				}
				c := meta.FindStatusCondition(cur.Status.Conditions, typ)
				if c == nil || c.Status != want || c.Reason != reason || !strings.Contains(c.Message, message) {
					return errorf("%s %+v", typ, c)
				}
				return nil
			})
		}
	}
	approved, reviewDue := condition(custodyv1alpha1.ConditionApproved), condition(custodyv1alpha1.ConditionReviewDue)
	approved(metav1.ConditionTrue, custodyv1alpha1.ReasonApproved, "until "+lapse.Format(time.RFC3339)+" (approval.validFor)")
	reviewDue(metav1.ConditionTrue, custodyv1alpha1.ReasonApprovalLapsesSoon, "the approval lapses at "+lapse.Format(time.RFC3339)+
		" (approval.validFor 1h0m0s), and then the grant issues nothing: an approver approves it again before then")
	waitGrantWarning(t, g, custodyv1alpha1.ReasonApprovalLapsesSoon, "kubectl custody approve grant api")
	// No other story has a grant whose approval lapses.
	if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionReviewDue); n != 1 {
		t.Errorf(`custody_grants{condition="ReviewDue"} = %v, want 1`, n)
	}
	first := apply(t, ns, `
metadata: {name: sync-1, labels: {app: sync}}
spec:
  steps: [{name: call, image: example.com/c:1, credentials: [api]}]`)
	startPod(t, jobOf(t, first, "call", 1))

	approved(metav1.ConditionFalse, custodyv1alpha1.ReasonApprovalExpired, "the approval lapsed at "+lapse.Format(time.RFC3339))
	if time.Now().Before(lapse) {
		t.Errorf("lapsed at %s, before %s", time.Now(), lapse)
	}
	eventually(t, "an ApprovalExpired Event on the grant", func() error {
		var list eventsv1.EventList
		if err := env.Client.List(ctxT(t), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == g.Name && e.Reason == custodyv1alpha1.ReasonApprovalExpired && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return errorf("none among %d Events", len(list.Items))
	})
	second := apply(t, ns, `
metadata: {name: sync-2, labels: {app: sync}}
spec:
  steps: [{name: call, image: example.com/c:1, credentials: [api]}]`)
	eventually(t, "the new run's step waits for an approval", func() error {
		st := stepOf(get(t, second), "call")
		if st.Reason != custodyv1alpha1.ReasonGrantNotApproved || !strings.Contains(st.Message, "its approval by bob lapsed at") {
			return errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	if len(jobs(t, second)) != 0 {
		t.Fatal("a Job exists for a step whose grant's approval lapsed")
	}
	// What was issued before the lapse runs to its own end.
	if c := recordOf(get(t, first), "call", "api"); c.IssuedAt.IsZero() || c.RevokedAt != nil {
		t.Errorf("the running step's issuance %+v, want held", c)
	}

	reviewDue(metav1.ConditionTrue, custodyv1alpha1.ReasonApprovalExpired, "the approval lapsed at "+lapse.Format(time.RFC3339))

	eventually(t, "a new approval", func() error {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			return err
		}
		cur.Annotations[custodyv1alpha1.AnnotationApproveGrant] = approve(time.Now())
		return env.Client.Update(ctxT(t), cur)
	})
	approved(metav1.ConditionTrue, custodyv1alpha1.ReasonApproved, "Approved by bob")
	jobOf(t, second, "call", 1)
	reviewDue(metav1.ConditionFalse, custodyv1alpha1.ReasonReviewNotDue, "; review due from ")
	if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionReviewDue); n != 0 {
		t.Errorf(`custody_grants{condition="ReviewDue"} = %v after a new approval, want 0`, n)
	}
}

// TestCredentials_unprotectedNamespace: a grant in a namespace that does not protect step pods
// says so (Unprotected=True, a Warning Event) and still issues; labelled
// custody.dev/protect-step-pods=true, the namespace is seen as protecting them at once (the manager
// watches namespaces' labels). Also for a manager that watches some namespaces
// (--watch-namespaces) and may read only those, by name (RBAC resourceNames): the grant controller
// lists and watches each by name. There the manager runs as a user with the manager's own
// permissions (config/rbac/role.yaml), but of namespaces only this one.
func TestCredentials_unprotectedNamespace(t *testing.T) {
	t.Parallel()
	t.Run("every namespace watched", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		startController(t, ns)
		unprotectedNamespace(t, ns)
	})
	t.Run("watched by name", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		user := "custody-manager-of-" + ns
		managerOfNamespace(t, ns, user)
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		startController(t, ns, cfg, func(g *credentialgrant.Reconciler) { g.NamespacesByName = []string{ns} })
		unprotectedNamespace(t, ns)
	})
}

func unprotectedNamespace(t *testing.T, ns string) {
	configMapReader(t, ns)
	g := grant(t, ns, `
metadata: {name: configs}
spec:
  subjects: [{workflowName: nightly, steps: [read]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	unprotected := func(status metav1.ConditionStatus, reason, message string) {
		t.Helper()
		eventually(t, "Unprotected="+string(status), func() error {
			cur := &custodyv1alpha1.CredentialGrant{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionUnprotected)
			if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
				return errorf("Unprotected: %+v", c)
			}
			if !meta.IsStatusConditionTrue(cur.Status.Conditions, custodyv1alpha1.ConditionReady) {
				return errorf("the grant is not Ready: %+v", cur.Status.Conditions)
			}
			return nil
		})
	}
	unprotected(metav1.ConditionTrue, custodyv1alpha1.ReasonNamespaceUnprotected,
		"Namespace "+ns+" does not protect step pods (label custody.dev/protect-step-pods=true)")
	waitGrantWarning(t, g, custodyv1alpha1.ReasonNamespaceUnprotected, "whoever may exec into or create pods there")
	// The gauge is global across the stories running beside this one: this grant is one of them.
	eventually(t, `custody_grants{condition="Unprotected"} >= 1`, func() error {
		if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionUnprotected); n < 1 {
			return errorf("%v", n)
		}
		return nil
	})
	wf := apply(t, ns, `
metadata: {name: nightly}
spec:
  steps: [{name: read, image: example.com/read:1, credentials: [configs]}]`)
	waitStep(t, wf, "read", custodyv1alpha1.StepRunning) // it still issues

	nsObj := &corev1.Namespace{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[custodyv1alpha1.LabelProtectStepPods] = "true"
	if err := env.Client.Update(ctxT(t), nsObj); err != nil {
		t.Fatal(err)
	}
	// The manager watches namespaces' labels: seen while nothing else changes (nothing polls).
	unprotected(metav1.ConditionFalse, custodyv1alpha1.ReasonNamespaceProtected, "Namespace "+ns+" protects step pods")
	succeed(t, wf, "read", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// managerOfNamespace gives user the manager's permissions (config/rbac/role.yaml's ClusterRole,
// which controller-gen makes from the code's markers), cluster-wide but for namespaces: of those,
// only ns, by name, as the chart's watchNamespaces does.
func managerOfNamespace(t *testing.T, ns, user string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml")) //nolint:gosec // the checkout's own file
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal([]byte(strings.Split(string(data), "\n---")[0]), role); err != nil || role.Kind != "ClusterRole" {
		t.Fatalf("config/rbac/role.yaml does not open with the manager's ClusterRole: %v", err)
	}
	narrowed := 0
	for i, r := range role.Rules {
		if slices.Equal(r.Resources, []string{"namespaces"}) {
			role.Rules[i].ResourceNames = []string{ns}
			narrowed++
		}
	}
	if narrowed != 1 {
		t.Fatalf("config/rbac/role.yaml has %d rules of namespaces alone, want 1", narrowed)
	}
	role.ObjectMeta = metav1.ObjectMeta{Name: user}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	for _, obj := range []client.Object{role, binding} {
		if err := env.Client.Create(ctxT(t), obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}
	// RBAC's cache takes a moment to see the binding.
	eventually(t, user+" may watch namespace "+ns, func() error {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "watch", Resource: "namespaces", Name: ns}}}
		if err := env.Client.Create(ctxT(t), sar); err != nil {
			return err
		}
		if !sar.Status.Allowed {
			return errorf("not yet")
		}
		return nil
	})
}

// TestCredentials_roleOfAGrant: a role grant is only as good as its role. One whose Role does not
// exist says so (Ready=False SourceNotFound, Stalled) and its steps wait rather than run with a
// binding that gives them nothing; once the Role exists they start. A Role that lets the step read
// Secrets is reported (BroadAccess=True, a Warning Event, the gauge) while the grant still issues;
// an edit that narrows it, or deletes it, is seen at once (the manager watches roles), while
// nothing else changes. A ClusterRole likewise.
func TestCredentials_roleOfAGrant(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns)
	g := grant(t, ns, `
metadata: {name: deploy}
spec:
  subjects: [{workflowName: release, steps: [roll-out]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}`)
	grantCondition := func(what string, ok func(*custodyv1alpha1.CredentialGrant) error) *custodyv1alpha1.CredentialGrant {
		t.Helper()
		cur := &custodyv1alpha1.CredentialGrant{}
		eventually(t, what, func() error {
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
				return err
			}
			return ok(cur)
		})
		return cur
	}
	condition := func(typ string, status metav1.ConditionStatus, reason, message string) func(*custodyv1alpha1.CredentialGrant) error {
		return func(g *custodyv1alpha1.CredentialGrant) error {
			c := meta.FindStatusCondition(g.Status.Conditions, typ)
			if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
				return errorf("%s: %+v", typ, c)
			}
			return nil
		}
	}
	missing := "Role deployer of CredentialGrant deploy does not exist in namespace " + ns
	cur := grantCondition("the grant Stalled on its missing Role", condition(custodyv1alpha1.ConditionStalled,
		metav1.ConditionTrue, custodyv1alpha1.ReasonSourceNotFound, missing))
	if c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready of a grant without its Role: %+v", c)
	}
	if c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionBroadAccess); c != nil {
		t.Errorf("BroadAccess of a role that does not exist: %+v", c)
	}

	wf := apply(t, ns, `
metadata: {name: release}
spec:
  steps: [{name: roll-out, image: example.com/deploy:1, credentials: [deploy]}]`)
	eventually(t, "the step waiting for the Role", func() error {
		st := stepOf(get(t, wf), "roll-out")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonSourceNotFound || st.Message != missing {
			return errorf("step %s %s %q", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	var jobs batchv1.JobList
	if err := env.Client.List(ctxT(t), &jobs, client.InNamespace(ns)); err != nil || len(jobs.Items) > 0 {
		t.Fatalf("a step whose grant's Role does not exist got a Job: %d (%v)", len(jobs.Items), err)
	}

	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
	}}
	if err := env.Client.Create(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	waitStep(t, wf, "roll-out", custodyv1alpha1.StepRunning)
	cur = grantCondition("BroadAccess=True", condition(custodyv1alpha1.ConditionBroadAccess, metav1.ConditionTrue,
		custodyv1alpha1.ReasonRoleReachesBeyondStep, "Role deployer lets a step that holds it read every Secret of the namespace"))
	if !meta.IsStatusConditionTrue(cur.Status.Conditions, custodyv1alpha1.ConditionReady) ||
		meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled) != nil {
		t.Errorf("a grant whose role reaches further still issues: conditions %+v", cur.Status.Conditions)
	}
	waitGrantWarning(t, g, custodyv1alpha1.ReasonRoleReachesBeyondStep, "Grant a role with only what the steps do")
	// Only the TestCredentials_broadRolesNeedApproval stories make other grants' roles reach further,
	// and they delete their grants as they end.
	eventually(t, `custody_grants{condition="BroadAccess"} = 1`, func() error {
		if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionBroadAccess); n != 1 {
			return errorf("%v", n)
		}
		return nil
	})

	// The manager watches roles: an edit is seen while nothing else about the grant or its runs changes.
	role.Rules = role.Rules[:2]
	if err := env.Client.Update(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	grantCondition("BroadAccess=False once the Role was narrowed", condition(custodyv1alpha1.ConditionBroadAccess,
		metav1.ConditionFalse, custodyv1alpha1.ReasonRoleWithinStep, "do none of these: read or change Secrets"))
	eventually(t, `custody_grants{condition="BroadAccess"} = 0 after the Role was narrowed`, func() error {
		if n := gauge(t, "custody_grants", "condition", custodyv1alpha1.ConditionBroadAccess); n != 0 {
			return errorf("%v", n)
		}
		return nil
	})
	if err := env.Client.Delete(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	grantCondition("the grant Stalled again once its Role was deleted", condition(custodyv1alpha1.ConditionStalled,
		metav1.ConditionTrue, custodyv1alpha1.ReasonSourceNotFound, missing))
	succeed(t, wf, "roll-out", 1, "") // the running attempt kept its binding to its end
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)

	// A ClusterRole likewise (its name is the cluster's: this namespace's own).
	cg := grant(t, ns, `
metadata: {name: read-configs}
spec:
  subjects: [{workflowName: report, steps: [read]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: `+ns+`-configs}}`)
	g = cg
	grantCondition("the grant Stalled on its missing ClusterRole", condition(custodyv1alpha1.ConditionStalled,
		metav1.ConditionTrue, custodyv1alpha1.ReasonSourceNotFound, "ClusterRole "+ns+"-configs of CredentialGrant read-configs does not exist"))
	report := apply(t, ns, `
metadata: {name: report}
spec:
  steps: [{name: read, image: example.com/report:1, credentials: [read-configs]}]`)
	eventually(t, "the step waiting for the ClusterRole", func() error {
		if st := stepOf(get(t, report), "read"); st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonSourceNotFound {
			return errorf("step %s %s %q", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-configs"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
	if err := env.Client.Create(ctxT(t), cr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cr) })
	waitStep(t, report, "read", custodyv1alpha1.StepRunning)
	grantCondition("the ClusterRole grant Ready", condition(custodyv1alpha1.ConditionBroadAccess,
		metav1.ConditionFalse, custodyv1alpha1.ReasonRoleWithinStep, ""))
}

// TestCredentials_approvalCoversTheRole: an approval of a role grant covers what the role's rules
// allowed when it was given. A change that allows nothing more (a verb removed) keeps it: the next
// step starts. Once the role allows more, the grant is no longer approved (Approved=False,
// RoleChanged, naming what was added, a Warning Event), the running step's binding is revoked at
// once, and the next step waits; approved again, it starts.
func TestCredentials_approvalCoversTheRole(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "cm-reader", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}}
	if err := env.Client.Create(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	approved := slices.Clone(role.Rules)
	g := grant(t, ns, `
metadata: {name: configs, annotations: {approve.custody.dev/grant: '{"approvedBy":"alice"}'}}
spec:
  subjects: [{workflowName: nightly, steps: [read, narrowed, widened]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}
  approval: {required: true, approvers: {users: [alice, bob]}}`)
	readGrant := func() *custodyv1alpha1.CredentialGrant {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			t.Fatal(err)
		}
		return cur
	}
	wf := apply(t, ns, `
metadata: {name: nightly}
spec:
  steps:
  - {name: read, image: example.com/r:1, credentials: [configs]}
  - {name: narrowed, image: example.com/r:1, credentials: [configs], dependsOn: [read]}
  - {name: widened, image: example.com/r:1, credentials: [configs], dependsOn: [narrowed]}`)
	cur := waitStep(t, wf, "read", custodyv1alpha1.StepRunning)
	waitCan(t, ns, stepOf(cur, "read").ServiceAccountName, true)
	// Admission did not stamp this approval (no webhook here): the controller recorded the rules it read.
	if a := readGrant().Status.Approval; a == nil || a.RoleRules != credentials.RulesDigest(role.Rules) ||
		!equality.Semantic.DeepEqual(a.ApprovedRules, approved) {
		t.Fatalf("the approval does not record the role's rules: %+v, want %s and %v", a, credentials.RulesDigest(role.Rules), approved)
	}

	// The role's owner takes a verb away: the approval still covers it; the next step starts (its
	// start reads the role itself).
	role.Rules[0].Verbs = []string{"get"}
	if err := env.Client.Update(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	succeed(t, wf, "read", 1, "")
	cur = waitStep(t, wf, "narrowed", custodyv1alpha1.StepRunning)
	sa := stepOf(cur, "narrowed").ServiceAccountName
	waitCan(t, ns, sa, true)
	if c := recordOf(cur, "read", "configs"); c.RevocationReason == custodyv1alpha1.ReasonRoleChanged {
		t.Errorf("a role narrowed revoked what the step held: %+v", c)
	}

	// Someone who may edit the role widens it, which the step's binding would hand to the step at
	// once (by something not BroadAccess, whose gauge TestCredentials_roleOfAGrant counts).
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list"}})
	if err := env.Client.Update(ctxT(t), role); err != nil {
		t.Fatal(err)
	}
	const why = "Role cm-reader of CredentialGrant configs changed since alice approved the grant"
	const added = "it now also allows get, list services, which the approval did not cover"
	eventually(t, "the grant no longer approved", func() error {
		c := meta.FindStatusCondition(readGrant().Status.Conditions, custodyv1alpha1.ConditionApproved)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != custodyv1alpha1.ReasonRoleChanged ||
			!strings.Contains(c.Message, why) || !strings.Contains(c.Message, added) {
			return errorf("Approved %+v", c)
		}
		return nil
	})
	if c := meta.FindStatusCondition(readGrant().Status.Conditions, custodyv1alpha1.ConditionReady); c == nil ||
		c.Reason != custodyv1alpha1.ReasonWaitingForApproval {
		t.Errorf("Ready of a grant whose role changed since its approval: %+v", c)
	}
	waitGrantWarning(t, g, custodyv1alpha1.ReasonRoleChanged, added)
	eventually(t, "the running step's binding revoked", func() error {
		if c := recordOf(get(t, wf), "narrowed", "configs"); c.RevokedAt == nil || c.RevocationReason != custodyv1alpha1.ReasonRoleChanged {
			return errorf("%+v", c)
		}
		return nil
	})
	waitCan(t, ns, sa, false)

	succeed(t, wf, "narrowed", 1, "")
	eventually(t, "the next step waiting for an approval of the role as it is now", func() error {
		st := stepOf(get(t, wf), "widened")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantNotApproved ||
			!strings.Contains(st.Message, why) || !strings.Contains(st.Message, added) {
			return errorf("step %s %s %q", st.Phase, st.Reason, st.Message)
		}
		return nil
	})

	eventually(t, "approving the grant again", func() error {
		cur := readGrant()
		cur.Annotations[custodyv1alpha1.AnnotationApproveGrant] = `{"approvedBy":"bob"}`
		return env.Client.Update(ctxT(t), cur)
	})
	cur = waitStep(t, wf, "widened", custodyv1alpha1.StepRunning)
	waitCan(t, ns, stepOf(cur, "widened").ServiceAccountName, true)
	if a := readGrant().Status.Approval; a == nil || a.ApprovedBy != "bob" || a.RoleRules != credentials.RulesDigest(role.Rules) ||
		!equality.Semantic.DeepEqual(a.ApprovedRules, role.Rules) {
		t.Errorf("the new approval does not record the role's rules as they are now: %+v", a)
	}
	succeed(t, wf, "widened", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// TestCredentials_broadRolesNeedApproval: in a namespace labelled
// custody.dev/broad-roles-need-approval=true, a grant whose role reaches beyond the step and that
// does not require an approval issues nothing (Ready=False ApprovalRequired, Stalled), and its
// steps wait as for an approval; once the grant requires an approval and has one, they start. A
// narrow role needs none there.
func TestCredentials_broadRolesNeedApproval(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t, map[string]string{custodyv1alpha1.LabelBroadRolesNeedApproval: "true"})
	startController(t, ns)
	configMapReader(t, ns)
	if err := env.Client.Create(ctxT(t), &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "runner", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}}}}); err != nil {
		t.Fatal(err)
	}
	narrow := grant(t, ns, `
metadata: {name: configs}
spec:
  subjects: [{workflowName: nightly, steps: [read]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}`)
	broad := grant(t, ns, `
metadata: {name: batch}
spec:
  subjects: [{workflowName: nightly, steps: [launch]}]
  credential: {kubernetesRole: {kind: Role, name: runner}}`)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), broad) }) // for the BroadAccess gauge of other stories
	wf := apply(t, ns, `
metadata: {name: nightly}
spec:
  steps:
  - {name: read, image: example.com/r:1, credentials: [configs]}
  - {name: launch, image: example.com/l:1, credentials: [batch]}`)
	waitStep(t, wf, "read", custodyv1alpha1.StepRunning)
	const why = "Role runner of CredentialGrant batch lets a step that holds it run pods"
	eventually(t, "the step of the broad grant waiting for an approval", func() error {
		st := stepOf(get(t, wf), "launch")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantNotApproved ||
			!strings.Contains(st.Message, why) || !strings.Contains(st.Message, "asks that such grants require an approval") {
			return errorf("step %s %s %q", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	stalled := func(g *custodyv1alpha1.CredentialGrant) *metav1.Condition {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), cur); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionStalled)
	}
	eventually(t, "the broad grant Stalled", func() error {
		if c := stalled(broad); c == nil || c.Reason != custodyv1alpha1.ReasonApprovalRequired || !strings.Contains(c.Message, why) {
			return errorf("Stalled %+v", c)
		}
		return nil
	})
	if c := stalled(narrow); c != nil {
		t.Errorf("a grant of a narrow role is Stalled there: %+v", c)
	}

	eventually(t, "grant update", func() error {
		cur := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(broad), cur); err != nil {
			return err
		}
		cur.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true,
			Approvers: &custodyv1alpha1.Approvers{Users: []string{"alice"}}}
		cur.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"alice"}`}
		return env.Client.Update(ctxT(t), cur)
	})
	waitStep(t, wf, "launch", custodyv1alpha1.StepRunning)
	eventually(t, "the approved grant no longer Stalled", func() error {
		if c := stalled(broad); c != nil {
			return errorf("Stalled %+v", c)
		}
		return nil
	})

	// The narrow role is widened while a step holds it: its binding would hand the step what the
	// namespace asks an approver to sign off, so it goes at once.
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), narrow) }) // broad now, for the gauge
	cmReader := &rbacv1.Role{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "cm-reader"}, cmReader); err != nil {
		t.Fatal(err)
	}
	cmReader.Rules = append(cmReader.Rules, rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}})
	if err := env.Client.Update(ctxT(t), cmReader); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the widened role's issuance revoked", func() error {
		if c := recordOf(get(t, wf), "read", "configs"); c.RevokedAt == nil || c.RevocationReason != custodyv1alpha1.ReasonApprovalRequired {
			return errorf("%+v (grant Stalled %+v)", c, stalled(narrow))
		}
		return nil
	})
	if c := recordOf(get(t, wf), "launch", "batch"); c.RevokedAt != nil {
		t.Errorf("the approved grant's issuance was revoked too: %+v", c)
	}
}

// TestCredentials_broadRolesNeedApprovalByDefault: with the manager's --broad-roles-need-approval,
// every namespace asks it: a step of a grant whose role reaches beyond the step and that requires
// no approval waits, until its namespace is labelled custody.dev/broad-roles-need-approval=false
// (the manager watches namespaces' labels: here, as with --watch-namespaces, this one by name).
func TestCredentials_broadRolesNeedApprovalByDefault(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.BroadRolesNeedApproval = true },
		func(g *credentialgrant.Reconciler) { g.BroadRolesNeedApproval, g.NamespacesByName = true, []string{ns} })
	if err := env.Client.Create(ctxT(t), &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "token-minter", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}}}}); err != nil {
		t.Fatal(err)
	}
	g := grant(t, ns, `
metadata: {name: tokens}
spec:
  subjects: [{workflowName: mint, steps: [mint]}]
  credential: {kubernetesRole: {kind: Role, name: token-minter}}`)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), g) }) // for the BroadAccess gauge of other stories
	wf := apply(t, ns, `
metadata: {name: mint}
spec:
  steps: [{name: mint, image: example.com/m:1, credentials: [tokens]}]`)
	eventually(t, "the step waiting for an approval its namespace asks by default", func() error {
		st := stepOf(get(t, wf), "mint")
		if st.Reason != custodyv1alpha1.ReasonGrantNotApproved || !strings.Contains(st.Message, "get tokens of any ServiceAccount") {
			return errorf("step %s %s %q", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: ns}, namespace); err != nil {
		t.Fatal(err)
	}
	namespace.Labels[custodyv1alpha1.LabelBroadRolesNeedApproval] = "false"
	if err := env.Client.Update(ctxT(t), namespace); err != nil {
		t.Fatal(err)
	}
	waitStep(t, wf, "mint", custodyv1alpha1.StepRunning) // looked at again within 15 s
}
