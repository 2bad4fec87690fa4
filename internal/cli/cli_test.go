package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/testenv"
)

var (
	env    *testenv.Env
	update = flag.Bool("update", false, "rewrite the golden files in testdata/")
)

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

// now is the fixed clock of the golden outputs.
var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// run runs `kubectl custody args...` against envtest in namespace ns.
func run(t *testing.T, ns, stdin string, args ...string) (string, error) {
	t.Helper()
	return runWith(t, env.Client, ns, stdin, args...)
}

// runWith runs `kubectl custody args...` with client c (a user's: env.As).
func runWith(t *testing.T, c client.Client, ns, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommandWithClient(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &out}, c, ns,
		func() time.Time { return now })
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

// golden compares got with testdata/<name>, with the namespace replaced by NS.
func golden(t *testing.T, name, ns, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, ns, "NS")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path) //nolint:gosec // the package's own golden file
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// fixture creates a finance workflow mid-run and its grants, with statuses as the controller
// writes them: post-payment holds a Secret copy and a role; an ended attempt of an earlier run
// still records a credential as held (a standing privilege the inventory must flag).
func fixture(t *testing.T) string {
	t.Helper()
	ns := env.Namespace(t)
	create := func(o client.Object, manifest string) {
		t.Helper()
		createWithStatus(t, ns, o, manifest)
	}
	create(&custodyv1alpha1.CredentialGrant{}, `
metadata: {name: erp-payments, annotations: {approve.custody.dev/grant: '{"approvedBy":"bob","approvedAt":"2026-11-29T11:50:00Z"}'}}
spec:
  subjects: [{workflowName: pay-invoice-4711, steps: [post-payment], images: ["registry.example.com/erp-client@sha256:*"]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  approval: {required: true, approvers: {groups: [finance-controllers]}}
  expiresAt: "2027-03-29T12:00:00Z"
  onRevoke: StopStep
status:
  active: 1
  activeIssuances:
  - {workflow: pay-invoice-4711, step: post-payment, attempt: 2, issuedAt: "2026-11-29T11:59:00Z", expiresAt: "2026-11-29T12:14:00Z",
     spiffeID: "spiffe://example.org/ns/NS/workflow/pay-invoice-4711/step/post-payment/run/u1/attempt/2"}
  issuedTotal: 7
  revokedTotal: 6
  approval: {approvedBy: bob, approvedAt: "2026-11-29T11:50:00Z"}
  lastIssuedTime: "2026-11-29T11:59:00Z"
  sourceChangedTime: "2026-10-01T12:00:00Z"
  conditions:
  - {type: Ready, status: "True", reason: Active, message: ok, lastTransitionTime: "2026-11-29T11:50:00Z"}
  - {type: RotationOverdue, status: "True", reason: RotationOverdue, message: old, lastTransitionTime: "2026-11-29T11:50:00Z"}
  - {type: Unprotected, status: "True", reason: NamespaceUnprotected, message: its namespace does not protect step pods,
     lastTransitionTime: "2026-11-29T11:50:00Z"}`)
	create(&custodyv1alpha1.CredentialGrant{}, `
metadata: {name: ledger}
spec:
  subjects: [{workflowSelector: {matchLabels: {team: finance}}, steps: [post-payment, reconcile]}]
  credential: {kubernetesRole: {kind: Role, name: ledger-writer}}
  ttl: 10m
  expiresAt: "2026-11-01T00:00:00Z"
status:
  lastIssuedTime: "2026-07-01T09:00:00Z"
  conditions:
  - {type: Ready, status: "False", reason: Suspended, message: suspended, lastTransitionTime: "2026-11-29T11:50:00Z"}
  - {type: Unused, status: "True", reason: NotUsedRecently, message: unused, lastTransitionTime: "2026-11-29T11:50:00Z"}
  - {type: BroadAccess, status: "True", reason: RoleReachesBeyondStep, message: reads Secrets, lastTransitionTime: "2026-11-29T11:50:00Z"}`)
	create(&custodyv1alpha1.Workflow{}, `
metadata: {name: pay-invoice-4711}
spec:
  steps:
  - {name: route-invoice, image: example.com/route:1}
  - {name: post-payment, image: example.com/pay:1, dependsOn: [route-invoice], approval: {approvers: {groups: [finance-controllers]}},
     credentials: [erp-payments, ledger]}
status:
  phase: Running
  progress: 1/2
  startTime: "2026-11-29T11:58:00Z"
  steps:
  - {name: route-invoice, phase: Succeeded, reason: Succeeded, attempt: 1, startTime: "2026-11-29T11:58:00Z", completionTime: "2026-11-29T11:58:40Z",
     spiffeID: "spiffe://example.org/ns/NS/workflow/pay-invoice-4711/step/route-invoice/run/u1/attempt/1", identity: {state: Revoked, attempt: 1}}
  - name: post-payment
    phase: Running
    reason: Started
    attempt: 2
    startTime: "2026-11-29T11:59:00Z"
    approval: {approvedBy: bob, approvedAt: "2026-11-29T11:58:50Z"}
    spiffeID: "spiffe://example.org/ns/NS/workflow/pay-invoice-4711/step/post-payment/run/u1/attempt/2"
    identity: {state: Registered, attempt: 2}
    credentials:
    - {grant: erp-payments, kind: Secret, attempt: 1, resource: Secret/pay-1, issuedAt: "2026-11-29T11:58:55Z", revokedAt: "2026-11-29T11:58:58Z", revocationReason: AttemptEnded}
    - {grant: erp-payments, kind: Secret, attempt: 2, resource: Secret/pay-2, onRevoke: StopStep, issuedAt: "2026-11-29T11:59:00Z", expiresAt: "2026-11-29T12:14:00Z",
       spiffeID: "spiffe://example.org/ns/NS/workflow/pay-invoice-4711/step/post-payment/run/u1/attempt/2"}`)
	create(&custodyv1alpha1.Workflow{}, `
metadata: {name: pay-invoice-4700}
spec:
  steps:
  - {name: post-payment, image: example.com/pay:1, credentials: [erp-payments]}
status:
  phase: Failed
  progress: 1/1
  steps:
  - name: post-payment
    phase: Failed
    reason: JobFailed
    message: "Attempt 1 of 1 failed (JobFailed): the step container exited with code 3"
    attempt: 1
    credentials:
    - {grant: erp-payments, kind: Secret, attempt: 1, resource: Secret/pay-4700, issuedAt: "2026-11-29T10:00:00Z"}`)
	return ns
}

// createWithStatus creates the object of a manifest in ns, then writes its status as the
// controller would.
func createWithStatus(t *testing.T, ns string, o client.Object, manifest string) {
	t.Helper()
	ctx := context.Background()
	if err := yaml.UnmarshalStrict([]byte(manifest), o); err != nil {
		t.Fatal(err)
	}
	o.SetNamespace(ns)
	status := o.DeepCopyObject().(client.Object)
	if err := env.Client.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(status)
	_ = json.Unmarshal(data, o)
	if err := env.Client.Status().Update(ctx, o); err != nil {
		t.Fatal(err)
	}
}

// TestGetShowsWhatAnApproverApproves: under a step that waits for an approval, get prints what
// the approval lets run, with the values it reads (a parameter, an earlier step's result) as the
// controller will put them in, the author's $$ and $(VAR) as the kubelet expands them (a value
// put in is never expanded), and the grants the step will hold.
func TestGetShowsWhatAnApproverApproves(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	wf := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: pay-invoice-4712}
spec:
  parameters: [{name: invoice, value: "4712"}, {name: note, value: "$(ACCOUNT) $$"}]
  steps:
  - {name: route-invoice, image: example.com/route:1, results: [{name: account}]}
  - name: post-payment
    image: example.com/pay:1
    dependsOn: [route-invoice]
    command: [pay]
    args: [--invoice, "$(params.invoice)", --memo, "invoice $(params.invoice)'s payment", "--fee=$$5", "--to=$(ACCOUNT)",
      "--note=$(params.note)", "--limit=$(LIMIT)"]
    env:
    - {name: ACCOUNT, value: "$(steps.route-invoice.results.account)"}
    - {name: MEMO, value: "for $(ACCOUNT), $$(ACCOUNT)"}
    - name: LIMIT
      valueFrom: {configMapKeyRef: {name: limits, key: daily}}
    approval: {approvers: {groups: [finance-controllers]}}
    credentials: [erp-payments]
`), wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = ns
	if err := env.Client.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	wf.Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, Steps: []custodyv1alpha1.StepStatus{
		{Name: "route-invoice", Phase: custodyv1alpha1.StepSucceeded, Reason: custodyv1alpha1.StepReasonSucceeded, Attempt: 1,
			Results: []custodyv1alpha1.StepResult{{Name: "account", Value: "DE44 5001"}}},
		{Name: "post-payment", Phase: custodyv1alpha1.StepWaitingForApproval, Reason: custodyv1alpha1.ReasonWaitingForApproval,
			Message: "Waiting for approval by a member of group finance-controllers: kubectl custody approve pay-invoice-4712 post-payment"},
	}}
	if err := env.Client.Status().Update(ctx, wf); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ns, "", "get", "pay-invoice-4712")
	if err != nil {
		t.Fatal(err, out)
	}
	golden(t, "get-approval.txt", ns, out)
	rejectWithAReason(t, ns, wf)
}

// rejectWithAReason rejects the waiting step: a reason that holds a token is refused before
// anything is sent; otherwise the annotation carries the reason, and get shows who rejected the
// step and why.
func rejectWithAReason(t *testing.T, ns string, wf *custodyv1alpha1.Workflow) {
	t.Helper()
	ctx := context.Background()
	key := custodyv1alpha1.AnnotationRejectPrefix + "post-payment"
	_, err := run(t, ns, "", "reject", wf.Name, "post-payment", "--reason", "use ghp_a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2 instead")
	if err == nil || !strings.Contains(err.Error(), "--reason looks like it contains a GitHub token") || strings.Contains(err.Error(), "ghp_") {
		t.Errorf("rejecting with a token in the reason: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil || wf.Annotations[key] != "" {
		t.Fatalf("after the refused reason: %v, annotations %v (want nothing sent)", err, wf.Annotations)
	}
	out, err := run(t, ns, "", "reject", wf.Name, "post-payment", "--reason", "the total does not match the purchase order")
	// This test runs no webhook: the value stays as sent, a rejection by nobody admission named.
	if err != nil || out != "workflow/pay-invoice-4712 step post-payment rejected by unverified\n" {
		t.Fatalf("reject: %v, %q", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil ||
		wf.Annotations[key] != "the total does not match the purchase order" {
		t.Fatalf("after reject: %v, annotations %v", err, wf.Annotations)
	}
	wf.Status.Phase = custodyv1alpha1.WorkflowFailed
	st := &wf.Status.Steps[1]
	st.Phase, st.Reason = custodyv1alpha1.StepFailed, custodyv1alpha1.ReasonApprovalRejected
	st.Message = "Rejected by bob: the total does not match the purchase order"
	st.Rejection = &custodyv1alpha1.RejectionRecord{RejectedBy: "bob", RejectedAt: metav1.Now(), Reason: "the total does not match the purchase order"}
	if err := env.Client.Status().Update(ctx, wf); err != nil {
		t.Fatal(err)
	}
	tree, err := run(t, ns, "", "get", wf.Name)
	want := "└─ post-payment  Failed (ApprovalRejected)\n      Rejected by bob: the total does not match the purchase order\n"
	if err != nil || !strings.Contains(tree, want) || strings.Contains(tree, "to approve") {
		t.Errorf("get after the rejection: %v, want\n%s\nand no approval preview in\n%s", err, want, tree)
	}
}

// TestGetDeletedRun: a deleted run that waits for the controller says what for in get's header,
// so that a `kubectl delete` that does not return explains itself.
func TestGetDeletedRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "deploy-41", Namespace: ns,
		Finalizers: []string{custodyv1alpha1.FinalizerRevocation}},
		Spec: custodyv1alpha1.WorkflowSpec{ConcurrencyGroup: "prod", Steps: []custodyv1alpha1.Step{{Name: "deploy", Image: "example.com/d:1"}}}}
	if err := env.Client.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.Patch(ctx, wf, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
	})
	if err := env.Client.Delete(ctx, wf); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ns, "", "get", "deploy-41")
	if err != nil {
		t.Fatal(err, out)
	}
	want := ": goes once the controller revoked what its steps held and its pods stopped (it keeps its place in " +
		"concurrency group prod until then) (finalizer custody.dev/revocation)"
	if lines := strings.Split(out, "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], "   deleted at ") || !strings.HasSuffix(lines[1], want) {
		t.Errorf("get of a deleted run:\n%s\nwant its second line to say it was deleted and%s", out, want)
	}
}

func TestGetTree(t *testing.T) {
	ns := fixture(t)
	out, err := run(t, ns, "", "get", "pay-invoice-4711")
	if err != nil {
		t.Fatal(err, out)
	}
	golden(t, "get.txt", ns, out)

	out, err = run(t, ns, "", "get", "pay-invoice-4711", "-o", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var wf custodyv1alpha1.Workflow
	if err := json.Unmarshal([]byte(out), &wf); err != nil || wf.Name != "pay-invoice-4711" || len(wf.Status.Steps) != 2 {
		t.Errorf("-o json does not round-trip to the Workflow: %v\n%s", err, out)
	}
	// --watch on a workflow that already ended prints it once and returns.
	out, err = run(t, ns, "", "get", "pay-invoice-4700", "--watch")
	if err != nil || strings.Count(out, "pay-invoice-4700  Failed") != 1 {
		t.Errorf("get --watch of an ended workflow: %v\n%s", err, out)
	}
	// A failed step says why under its line.
	if want := "└─ post-payment  Failed (JobFailed)  attempt 1\n      Attempt 1 of 1 failed (JobFailed): the step container exited with code 3\n"; !strings.Contains(out, want) {
		t.Errorf("get of a failed workflow:\n%s\nwant\n%s", out, want)
	}
	if _, err := run(t, ns, "", "get", "missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("get of a missing workflow: %v", err)
	}

	// The steps of a forEach step's items say whose item they run; a step allowed to fail says so,
	// and so do the run's concurrency group and the run it reuses, and a reused step.
	fan := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{ConcurrencyGroup: "prod", ConcurrencyLimit: ptr.To[int32](2),
		ReuseFrom: "rollout-1",
		Steps: []custodyv1alpha1.Step{{Name: "deploy", ForEach: []string{"eu", "us"}}, {Name: "verify",
			OnFailure: custodyv1alpha1.StepFailureContinue}}}}
	fan.Namespace, fan.Name = "ns", "rollout"
	fan.Status.Reused = &custodyv1alpha1.ReusedRun{Name: "rollout-1", UID: "u1", Steps: 1}
	fan.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "deploy-eu", Phase: custodyv1alpha1.StepSucceeded,
		Reason: custodyv1alpha1.StepReasonReused, Message: "Succeeded in workflow rollout-1 (attempt 2); not run again"},
		{Name: "deploy-us", Phase: custodyv1alpha1.StepRunning}, {Name: "verify", Phase: custodyv1alpha1.StepPending}}
	var b strings.Builder
	if err := writeTree(&b, fan, now); err != nil {
		t.Fatal(err)
	}
	if want := "   concurrency group prod (2 at a time)\n   reuses workflow/rollout-1 (steps taken over: 1)\n" +
		"├─ deploy-eu (deploy item eu)  Succeeded (Reused)\n├─ deploy-us (deploy item us)  Running\n" +
		"└─ verify (may fail)  Pending\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("tree of a forEach run:\n%s\nwant it to end with\n%s", b.String(), want)
	}
}

// TestGetGrant: a grant as its approvers and owners read it: what it hands out (never a value), to
// which steps, for how long, its approval, what is wrong with it, and who holds it now.
func TestGetGrant(t *testing.T) {
	ns := fixture(t)
	ctx := context.Background()
	// Who may request each grant (use): by name, every grant, through a Role or a ClusterRole;
	// not who may only read grants, nor a binding to a role that does not exist.
	useOf := func(names ...string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{{APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"use"},
			ResourceNames: names}}
	}
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "erp-user", Namespace: ns}, Rules: useOf("erp-payments")},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ledger-user", Namespace: ns}, Rules: useOf("ledger")},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "grant-reader", Namespace: ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"get", "list", "watch"}}}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-grant-user"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"custody.dev"}, Resources: []string{"*"}, Verbs: []string{"use"}}}},
		binding(ns, "erp-users", "Role", "erp-user", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "finance-devs"},
			rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}),
		binding(ns, "ledger-users", "Role", "ledger-user", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "ci", Name: "deployer"}),
		binding(ns, "readers", "Role", "grant-reader", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mallory"}),
		binding(ns, "gone", "Role", "no-such-role", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mallory"}),
		binding(ns, "platform", "ClusterRole", ns+"-grant-user", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "pat"}),
		// The role the ledger grant hands out: its rules are what an approval covers.
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ledger-writer", Namespace: ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}, ResourceNames: []string{"ledger"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"list"}}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	var all strings.Builder
	for _, ref := range []string{"grant/erp-payments", "cgrant/ledger"} {
		out, err := run(t, ns, "", "get", ref)
		if err != nil {
			t.Fatal(err, out)
		}
		all.WriteString(out)
	}
	golden(t, "get-grant.txt", ns, all.String())
	out, err := run(t, ns, "", "get", "credentialgrant/erp-payments", "-o", "json")
	var g custodyv1alpha1.CredentialGrant
	if err != nil || json.Unmarshal([]byte(out), &g) != nil || g.Name != "erp-payments" || g.Status.Active != 1 {
		t.Errorf("-o json: %v\n%s", err, out)
	}
	if _, err := run(t, ns, "", "get", "grant/nothing"); err == nil || !strings.Contains(err.Error(), `"nothing" not found`) {
		t.Errorf("a grant that does not exist: %v", err)
	}
	// A grant whose role changed since its approval says so, with what to do.
	createWithStatus(t, ns, &custodyv1alpha1.CredentialGrant{}, `
metadata: {name: ledger-approved, annotations: {approve.custody.dev/grant: '{"approvedBy":"bob","approvedAt":"2026-11-29T11:50:00Z"}'}}
spec:
  subjects: [{workflowName: invoice-4711, steps: [post]}]
  credential: {kubernetesRole: {kind: Role, name: ledger-writer}}
  approval: {required: true, approvers: {users: [bob]}}
status:
  approval: {approvedBy: bob, approvedAt: "2026-11-29T11:50:00Z", roleRules: "sha256:0123",
    approvedRules: [{apiGroups: [""], resources: [configmaps], resourceNames: [ledger], verbs: [get, update]}]}
  conditions:
  - {type: Approved, status: "False", reason: RoleChanged, lastTransitionTime: "2026-11-29T12:00:00Z",
     message: "Role ledger-writer of CredentialGrant ledger-approved changed since bob approved the grant at 2026-11-29T11:50:00Z: it now also allows list batch/jobs, batch/cronjobs, which the approval did not cover. Nothing is issued ..."}`)
	out, err = run(t, ns, "", "get", "grant/ledger-approved")
	for _, want := range []string{"   approval: required of user bob; ROLE CHANGED (approved by bob) at 2026-11-29T11:50:00Z\n",
		"   ROLE CHANGED: Role ledger-writer of CredentialGrant ledger-approved changed since bob approved the grant",
		"   its rules (what an approval covers; allowing more, the grant needs approving again): 2\n     get, update configmaps named ledger\n",
		"     list batch/jobs, batch/cronjobs   <- NOT APPROVED: beyond what bob approved\n"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("get grant of a role changed since its approval: %v, want %q in\n%s", err, want, out)
		}
	}
	// mallory may read grants, not RoleBindings.
	out, err = runWith(t, env.As("mallory"), ns, "", "get", "grant/ledger")
	for _, want := range []string{"MAY REQUEST IT: unknown (you may not read RoleBindings, ClusterRoleBindings and their roles)\n",
		"   its rules: unknown (you may not read Role ledger-writer)\n"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("get grant as mallory: %v, want %q in\n%s", err, want, out)
		}
	}
}

// TestOnRevokeLine: get grant says what a revocation does to the step under the grant's own
// onRevoke, or the platform's default the controller recorded in its status (Continue before it did).
func TestOnRevokeLine(t *testing.T) {
	for _, c := range []struct {
		own, status custodyv1alpha1.RevokePolicy
		want        string
	}{
		{custodyv1alpha1.RevokeStopStep, custodyv1alpha1.RevokeStopStep, "the step is stopped (onRevoke: StopStep)"},
		{custodyv1alpha1.RevokeContinue, custodyv1alpha1.RevokeContinue, "the step runs on without it (onRevoke: Continue)"},
		{"", custodyv1alpha1.RevokeStopStep, "the step is stopped (onRevoke: StopStep, the platform's default)"},
		{"", "", "the step runs on without it (onRevoke: Continue, the platform's default)"},
	} {
		g := &custodyv1alpha1.CredentialGrant{}
		g.Spec.OnRevoke, g.Status.OnRevoke = c.own, c.status
		if got := onRevokeLine(g); got != c.want {
			t.Errorf("spec %q, status %q: %q, want %q", c.own, c.status, got, c.want)
		}
	}
}

// TestCoverage: get template/NAME says whether each grant covers the steps that request it in the
// template's runs, and what to change when it does not.
func TestCoverage(t *testing.T) {
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	tpl.Namespace, tpl.Name = "payments", "nightly"
	tpl.Spec.Steps = []custodyv1alpha1.Step{{Name: "pay", Image: "example.com/pay:1"}, {Name: "archive", Image: "example.com/archive:1",
		ForEach: []string{"a", "b"}}}
	grant := func(subjects string) *custodyv1alpha1.CredentialGrant {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := yaml.UnmarshalStrict([]byte("subjects: "+subjects), &g.Spec); err != nil {
			t.Fatal(err)
		}
		g.Namespace = "payments"
		return g
	}
	const byLabel = "{workflowSelector: {matchLabels: {custody.dev/template: nightly}}"
	for _, tc := range []struct {
		name, subjects string
		steps          []string
		want           string
	}{
		{"selects the template's runs", "[" + byLabel + ", steps: [pay, archive]}]", []string{"pay", "archive"}, "yes"},
		{"and the image", "[" + byLabel + ", steps: [archive], images: ['example.com/archive:*']}]", []string{"archive"}, "yes"},
		{"another image", "[" + byLabel + ", steps: [pay], images: ['example.com/other:*']}]", []string{"pay"},
			"NO for pay (not among its steps, or another image)"},
		{"a step left out", "[" + byLabel + ", steps: [pay]}]", []string{"pay", "archive"}, "NO for archive"},
		{"by name", "[{workflowName: nightly-1, steps: [pay]}]", []string{"pay"},
			"only a run named nightly-1 (kubectl custody run --name nightly-1); to cover every run, select custody.dev/template=nightly"},
		{"by name, another step", "[{workflowName: nightly-1, steps: [check]}]", []string{"pay"},
			"NO (its subjects do not select this template's runs; to cover every run, select custody.dev/template=nightly)"},
		{"other labels", "[{workflowSelector: {matchLabels: {team: finance}}, steps: [pay]}]", []string{"pay"},
			"NO (its subjects do not select this template's runs"},
	} {
		if got := coverage(grant(tc.subjects), credentials.TemplateRun(tpl), tc.steps); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A CronWorkflow's scheduled runs: no name a grant could give covers them.
	cw := &custodyv1alpha1.CronWorkflow{}
	cw.Namespace, cw.Name = "payments", "nightly"
	cw.Spec.WorkflowSpec.Steps = tpl.Spec.Steps
	for subjects, want := range map[string]string{
		"[{workflowSelector: {matchLabels: {custody.dev/cronworkflow: nightly}}, steps: [pay]}]": "yes",
		"[{workflowName: nightly, steps: [pay]}]": "NO (it names workflow nightly, but the runs are named nightly-<minutes since the epoch>; " +
			"to cover every run, select custody.dev/cronworkflow=nightly)",
		"[" + byLabel + ", steps: [pay]}]": "NO (its subjects do not select the runs; to cover every run, select custody.dev/cronworkflow=nightly)",
	} {
		if got := coverage(grant(subjects), credentials.CronRun(cw, nil), []string{"pay"}); got != want {
			t.Errorf("a scheduled run, %s: %q, want %q", subjects, got, want)
		}
	}
}

// binding is a RoleBinding in ns of a Role or ClusterRole to subjects.
func binding(ns, name, kind, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role}, Subjects: subjects}
}

// TestGetTemplate: get template/NAME tells someone about to run a template how (its required
// parameters), what each parameter takes, its steps and what they request, whether each grant can
// issue and whether they may use it (admission refuses their run otherwise), and its runs, the
// newest first.
func TestGetTemplate(t *testing.T) {
	ns := fixture(t)
	createWithStatus(t, ns, &custodyv1alpha1.WorkflowTemplate{}, `
metadata: {name: payments}
spec:
  parameters:
  - {name: invoice, description: the invoice to pay, pattern: '[0-9]+'}
  - {name: mode, default: normal, allowedValues: [normal, urgent]}
  steps:
  - {name: check, image: example.com/check:1, args: ["$(params.invoice)"], results: [{name: amount}]}
  - {name: pay, image: example.com/pay:1, dependsOn: [check], approval: {approvers: {groups: [finance-controllers]}},
     credentials: [erp-payments, ledger]}
  - {name: archive, image: example.com/archive:1, dependsOn: [pay], forEach: [a, b], credentials: [archive-bucket]}
  finally: [{name: notify, image: example.com/notify:1, credentials: [ledger, chat]}]
  results: [{name: amount, value: "$(steps.check.results.amount)"}]
status:
  observedGeneration: 1
  conditions: [{type: Ready, status: "True", reason: Valid, message: ok, lastTransitionTime: "2026-11-29T11:00:00Z"}]`)
	// A grant that follows the template covers its runs.
	createWithStatus(t, ns, &custodyv1alpha1.CredentialGrant{}, `
metadata: {name: chat}
spec:
  subjects: [{workflowSelector: {matchLabels: {custody.dev/template: payments}}, steps: [notify]}]
  credential: {secret: {name: chat-webhook, keys: [url]}}
status:
  conditions: [{type: Ready, status: "True", reason: Active, message: ok, lastTransitionTime: "2026-11-29T11:50:00Z"}]`)
	for _, run := range []string{`
metadata: {name: payments-8h2kd, labels: {custody.dev/template: payments}, annotations: {custody.dev/created-by: alice}}
spec: {workflowTemplateRef: {name: payments}, parameters: [{name: invoice, value: "4711"}]}
status:
  phase: Succeeded
  progress: 4/4
  startTime: "2026-11-29T10:00:00Z"
  completionTime: "2026-11-29T10:04:10Z"
  template: {name: payments, generation: 1, spec: {steps: [{name: check, image: example.com/check:1}]}}`, `
metadata: {name: payments-q9x4z, labels: {custody.dev/template: payments}, annotations: {custody.dev/created-by: bob}}
spec: {workflowTemplateRef: {name: payments}, parameters: [{name: invoice, value: "4712"}]}
status:
  phase: Running
  progress: 1/4
  startTime: "2026-11-29T11:50:00Z"
  template: {name: payments, generation: 1, spec: {steps: [{name: check, image: example.com/check:1}]}}
  conditions: [{type: Ready, status: "False", reason: WaitingForApproval, message: pay waits, lastTransitionTime: "2026-11-29T11:51:00Z"}]`,
	} {
		createWithStatus(t, ns, &custodyv1alpha1.Workflow{}, run)
	}
	out, err := run(t, ns, "", "get", "template/payments")
	if err != nil {
		t.Fatal(err, out)
	}
	golden(t, "get-template.txt", ns, out)

	// A user who may read templates, runs and grants but not use the grants: told before admission
	// refuses their run. One who may not read grants is told that too.
	ctx := context.Background()
	reader := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "template-reader", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"custody.dev"}, Resources: []string{"workflowtemplates"}, Verbs: []string{"get"}},
		{APIGroups: []string{"custody.dev"}, Resources: []string{"workflows"}, Verbs: []string{"list"}},
		{APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"get"}, ResourceNames: []string{"ledger"}},
	}}
	if err := env.Client.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "carol", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: reader.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"}}}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for try := 0; ; try++ { // the API server's RBAC sees the new binding within moments
		out, err := runWith(t, env.As("carol"), ns, "", "get", "template/payments")
		if err == nil {
			lines = strings.Split(out, "\n")
			break
		}
		if try == 50 {
			t.Fatalf("carol reads the template: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for grant, want := range map[string]string{
		"erp-payments ":   `erp-payments\s+pay\s+-\s+-\s+\? \(you may not read it\)\s+NO \(ask the grant's owner for use on it\)\s+-$`,
		"ledger ":         `ledger\s+pay,notify\s+KubernetesRole\s+not required\s+False \(Suspended\)\s+NO \(ask.*\)\s+NO \(its subjects`,
		"archive-bucket ": `archive-bucket\s+archive\s+-\s+-\s+\? \(you may not read it\)\s+NO`,
	} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, grant) })
		if i < 0 || !regexp.MustCompile(want).MatchString(lines[i]) {
			t.Errorf("carol's line of grant %s: %q, want %s", grant, lines[max(i, 0)], want)
		}
	}
	if _, err := run(t, ns, "", "get", "template/payments", "-w"); err == nil || !strings.Contains(err.Error(), "kubectl custody get RUN -w") {
		t.Errorf("get template -w: %v", err)
	}
	out, err = run(t, ns, "", "get", "cwft/payments", "-o", "yaml")
	if err != nil || !strings.Contains(out, "name: payments\n") || !strings.Contains(out, "kind: WorkflowTemplate") {
		t.Errorf("-o yaml: %v\n%s", err, out)
	}
}

func TestInventory(t *testing.T) {
	ns := fixture(t)
	out, err := run(t, ns, "", "inventory")
	if err == nil || !strings.Contains(err.Error(), "1 credentials are held by nothing running") {
		t.Errorf("inventory with a standing credential: err %v", err)
	}
	golden(t, "inventory.txt", ns, out)

	// Every namespace: the namespace is a column.
	out, _ = run(t, ns, "", "inventory", "-A")
	if !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, ns+"  pay-invoice-4711") {
		t.Errorf("inventory -A:\n%s", out)
	}

	out, _ = run(t, ns, "", "inventory", "-o", "json")
	var inv Inventory
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(inv.Issuances) != 1 || inv.Issuances[0].Attempt != 2 || len(inv.Standing) != 1 || inv.Standing[0].Workflow != "pay-invoice-4700" ||
		len(inv.Grants) != 2 || !inv.Grants[0].RotationOverdue || inv.Grants[0].Approval != "approved by bob" || inv.Grants[0].Unused ||
		!inv.Grants[1].Unused || inv.Grants[1].LastIssuedTime == nil || inv.Grants[0].BroadAccess || !inv.Grants[1].BroadAccess {
		t.Errorf("inventory JSON: %+v", inv)
	}
	out, _ = run(t, ns, "", "inventory", "-o", "yaml")
	var again Inventory
	if err := yaml.Unmarshal([]byte(out), &again); err != nil || len(again.Issuances) != 1 || len(again.Grants) != 2 {
		t.Errorf("-o yaml: %v %+v", err, again)
	}
}

func TestActions(t *testing.T) {
	ns := fixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		cmd  string
		want bool
	}{{"suspend", true}, {"resume", false}} {
		out, err := run(t, ns, "", c.cmd, "pay-invoice-4711")
		wf := &custodyv1alpha1.Workflow{}
		if gerr := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711"}, wf); err != nil || gerr != nil ||
			wf.Spec.Suspend != c.want || !strings.Contains(out, "workflow/pay-invoice-4711 "+c.cmd) {
			t.Errorf("%s: %v %v, spec.suspend=%v, printed %q", c.cmd, err, gerr, wf.Spec.Suspend, out)
		}
		// get says so, and how to go on.
		tree, err := run(t, ns, "", "get", "pay-invoice-4711")
		if said := strings.Contains(tree, "   suspended: no step starts until kubectl custody resume pay-invoice-4711\n"); err != nil || said != c.want {
			t.Errorf("get after %s: %v, says suspended: %v\n%s", c.cmd, err, said, tree)
		}
	}
	cancelWithAReason(t, ns)
	if out, err := run(t, ns, "", "approve", "pay-invoice-4711", "--step", "post-payment"); err != nil {
		t.Fatal(err, out)
	}
	wf := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711"}, wf); err != nil ||
		wf.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"post-payment"] == "" {
		t.Errorf("approve step: %v, annotations %v", err, wf.Annotations)
	}
	if out, err := run(t, ns, "", "approve", "grant", "ledger"); err != nil {
		t.Fatal(err, out)
	}
	killSwitch(t, ns)
	// The step may also follow the workflow's name (admission, not running here, would refuse a
	// step without an approval gate).
	if out, err := run(t, ns, "", "approve", "pay-invoice-4711", "route-invoice"); err != nil || out != "workflow/pay-invoice-4711 step route-invoice approved: approved\n" {
		t.Errorf("approve WORKFLOW STEP: %v, printed %q", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711"}, wf); err != nil ||
		wf.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"route-invoice"] == "" {
		t.Errorf("approve WORKFLOW STEP: %v, annotations %v", err, wf.Annotations)
	}
	if _, err := run(t, ns, "", "approve", "pay-invoice-4711"); err == nil ||
		err.Error() != "approve pay-invoice-4711 needs the step to approve: kubectl custody approve pay-invoice-4711 STEP" {
		t.Errorf("approve without a step: %v", err)
	}
	if _, err := run(t, ns, "", "approve", "pay-invoice-4711", "a", "--step", "b"); err == nil {
		t.Error("approve of two different steps at once succeeded")
	}
}

// killSwitch: revoke grant asks first, suspends the grant, says what happens to the steps that held
// it, and with --stop-steps sets the grant's onRevoke too.
func killSwitch(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	// The kill switch asks first.
	if out, err := run(t, ns, "n\n", "revoke", "grant", "erp-payments"); err == nil || !strings.Contains(out, "[y/N]") {
		t.Errorf("revoke without confirmation: %v\n%s", err, out)
	}
	g := &custodyv1alpha1.CredentialGrant{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "erp-payments"}, g); err != nil || g.Spec.Suspended {
		t.Errorf("a declined revoke suspended the grant: %v", err)
	}
	if out, err := run(t, ns, "", "revoke", "grant", "erp-payments", "--yes"); err != nil ||
		!strings.Contains(out, "the steps holding it are stopped (onRevoke: StopStep)") {
		t.Fatal(err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "erp-payments"}, g); err != nil || !g.Spec.Suspended {
		t.Errorf("revoke --yes: %v, suspended=%v", err, g.Spec.Suspended)
	}
	// The grant's policy is said; --stop-steps sets it with the switch.
	if out, err := run(t, ns, "", "revoke", "grant", "ledger", "--yes"); err != nil ||
		!strings.Contains(out, "the steps holding it run on without it (onRevoke: Continue; --stop-steps stops them)") {
		t.Errorf("revoke grant ledger: %v\n%s", err, out)
	}
	if out, err := run(t, ns, "n\n", "revoke", "grant", "ledger", "--stop-steps"); err == nil ||
		!strings.Contains(out, "and stop the steps holding it? [y/N]") {
		t.Errorf("revoke --stop-steps without confirmation: %v\n%s", err, out)
	}
	if out, err := run(t, ns, "", "revoke", "grant", "ledger", "--stop-steps", "--yes"); err != nil ||
		!strings.Contains(out, "the steps holding it are stopped (onRevoke: StopStep)") {
		t.Errorf("revoke --stop-steps: %v\n%s", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ledger"}, g); err != nil ||
		!g.Spec.Suspended || g.Spec.OnRevoke != custodyv1alpha1.RevokeStopStep {
		t.Errorf("revoke --stop-steps: %v, suspended=%v onRevoke=%q", err, g.Spec.Suspended, g.Spec.OnRevoke)
	}
	// resume grant undoes the switch, and says that --stop-steps' policy stays.
	if out, err := run(t, ns, "", "resume", "grant", "ledger"); err != nil || out != "credentialgrant/ledger resumed: it issues again "+
		"to the steps it covers; revoked before its step ends, the step is stopped (onRevoke: StopStep) (set on the grant, for "+
		"example by revoke --stop-steps; remove spec.onRevoke for the platform's default)\n" {
		t.Errorf("resume grant ledger: %v\n%q", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ledger"}, g); err != nil || g.Spec.Suspended {
		t.Errorf("resume grant: %v, suspended=%v", err, g.Spec.Suspended)
	}
	if _, err := run(t, ns, "", "resume", "grant"); err == nil || !strings.Contains(err.Error(), "resume grant needs the grant's name") {
		t.Errorf("resume grant without a name: %v", err)
	}
	if _, err := run(t, ns, "", "suspend", "grant", "ledger"); err == nil || !strings.Contains(err.Error(), "kubectl custody revoke grant NAME") {
		t.Errorf("suspend grant: %v, want pointed to the kill switch", err)
	}
}

// cancelWithAReason cancels the fixture's run with --reason and checks what get says of it.
func cancelWithAReason(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	if _, err := run(t, ns, "", "cancel", "pay-invoice-4711", "--reason", "use xoxb-1234567890-abcdefghijkl"); err == nil ||
		!strings.Contains(err.Error(), "--reason looks like it contains") || strings.Contains(err.Error(), "xoxb-") {
		t.Errorf("cancelling with a token in the reason: %v, want refused before anything is sent, without the token", err)
	}
	if out, err := run(t, ns, "", "cancel", "pay-invoice-4711", "--reason", "the change window closed"); err != nil {
		t.Fatal(err, out)
	}
	wf := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711"}, wf); err != nil || !wf.Spec.Cancel ||
		wf.Annotations[custodyv1alpha1.AnnotationCancelReason] != "the change window closed" {
		t.Errorf("cancel: %v, spec.cancel=%v, annotations %v", err, wf.Spec.Cancel, wf.Annotations)
	}
	// What admission adds (this test runs no webhook), and what a CronWorkflow's run carries: get
	// says who cancelled the run and why, and whose schedule started it.
	patch := client.MergeFrom(wf.DeepCopy())
	wf.Annotations[custodyv1alpha1.AnnotationCancelledBy] = "bob"
	wf.Annotations[custodyv1alpha1.AnnotationScheduledTime] = "2026-11-30T01:30:00Z"
	wf.Annotations[custodyv1alpha1.AnnotationOnBehalfOf] = "alice"
	wf.Labels = map[string]string{custodyv1alpha1.LabelCronWorkflow: "nightly-payments"}
	if err := env.Client.Patch(ctx, wf, patch); err != nil {
		t.Fatal(err)
	}
	tree, err := run(t, ns, "", "get", "pay-invoice-4711")
	for _, line := range []string{"   cancelled by bob: the change window closed\n",
		"   run of cronworkflow/nightly-payments scheduled for 2026-11-30T01:30:00Z on behalf of alice\n"} {
		if !strings.Contains(tree, line) {
			t.Errorf("get after cancel: %v, want the line %q in\n%s", err, line, tree)
		}
	}
	// While the pods of the steps it stopped are stopping, the run says it waits for them.
	wf.Status.Phase = custodyv1alpha1.WorkflowRunning
	wf.Status.Conditions = []metav1.Condition{{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: custodyv1alpha1.ReasonStopping, Message: "Waiting for the pods of stopped attempts to stop: pay-invoice-4711-pay-1-x7k2p (step pay)",
		LastTransitionTime: metav1.Now()}}
	if err := env.Client.Status().Update(ctx, wf); err != nil {
		t.Fatal(err)
	}
	if tree, err := run(t, ns, "", "get", "pay-invoice-4711"); err != nil ||
		!strings.Contains(tree, "   Waiting for the pods of stopped attempts to stop: pay-invoice-4711-pay-1-x7k2p (step pay)\n") {
		t.Errorf("get while stopping: %v, want the line that says what the run waits for in\n%s", err, tree)
	}
	if _, err := run(t, ns, "", "cancel", "pay-invoice-4711", "--reason", "again"); err == nil ||
		err.Error() != "workflow "+ns+"/pay-invoice-4711 was already cancelled by bob: the change window closed" {
		t.Errorf("cancelling a cancelled run: %v", err)
	}
}

// TestRun starts runs of a template: parameters are checked against the template before anything
// is sent, and the run references the template with the values given.
func TestRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: db-backup}
spec:
  parameters:
  - {name: database, description: which database, allowedValues: [orders, customers]}
  - {name: retention, default: 30d, pattern: '[0-9]+d'}
  steps: [{name: snapshot, image: example.com/dump:1}]`), tpl); err != nil {
		t.Fatal(err)
	}
	tpl.Namespace = ns
	if err := env.Client.Create(ctx, tpl); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ns, "", "run", "db-backup", "-p", "retention=90d", "-p", "database=orders")
	if err != nil || !strings.Contains(out, "created from workflowtemplate/db-backup") {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var list custodyv1alpha1.WorkflowList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Fatalf("runs: %v, %d", err, len(list.Items))
	}
	wf := list.Items[0]
	if !strings.HasPrefix(wf.Name, "db-backup-") || wf.Spec.WorkflowTemplateRef == nil || wf.Spec.WorkflowTemplateRef.Name != "db-backup" ||
		len(wf.Spec.Parameters) != 2 || wf.Spec.Parameters[0] != (custodyv1alpha1.Parameter{Name: "database", Value: "orders"}) {
		t.Errorf("run %s: %+v", wf.Name, wf.Spec)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"run", "db-backup"}, []string{`parameter "database" is required (which database)`, "database (required) one of orders, customers"}},
		{[]string{"run", "db-backup", "-p", "database=billing"}, []string{`"billing" is not one of the allowed values`}},
		{[]string{"run", "db-backup", "-p", "database=orders", "-p", "retention=90d; rm -rf /"},
			[]string{`parameter "retention": "90d; rm -rf /" does not match the pattern "[0-9]+d"`, `retention (default "30d") matching [0-9]+d`}},
		{[]string{"run", "db-backup", "-p", "database"}, []string{"write NAME=VALUE"}},
		{[]string{"run", "db-backup", "-p", "database=orders", "-p", "database=customers"}, []string{"given twice"}},
		{[]string{"run", "nope"}, []string{"workflowtemplate " + ns + "/nope not found"}},
	} {
		out, err := run(t, ns, "", tc.args...)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v (%s), want an error with %q", tc.args, err, out, w)
			}
		}
	}
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil || len(list.Items) != 1 {
		t.Errorf("refused runs created something: %d runs", len(list.Items))
	}
	if out, err := run(t, ns, "", "run", "db-backup", "-p", "database=customers", "--name", "before-migration"); err != nil ||
		!strings.Contains(out, "workflow/before-migration created") {
		t.Errorf("run --name: %v\n%s", err, out)
	}

	// The tree of a resolved run names its template and marks finally steps.
	wf.Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, Progress: "1/2",
		Template: &custodyv1alpha1.ResolvedTemplate{Name: "db-backup", Generation: 3, Spec: custodyv1alpha1.WorkflowTemplateSpec{
			Steps:   []custodyv1alpha1.Step{{Name: "snapshot", Image: "example.com/dump:1"}},
			Finally: []custodyv1alpha1.Step{{Name: "cleanup", Image: "example.com/c:1"}}}},
		Steps: []custodyv1alpha1.StepStatus{{Name: "snapshot", Phase: custodyv1alpha1.StepSucceeded},
			{Name: "cleanup", Phase: custodyv1alpha1.StepRunning}}}
	if err := env.Client.Status().Update(ctx, &wf); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, ns, "", "get", wf.Name)
	if err != nil || !strings.Contains(out, "from workflowtemplate/db-backup (generation 3)") || !strings.Contains(out, "cleanup (finally)  Running") {
		t.Errorf("get of a template run:\n%s (%v)", out, err)
	}
}

// TestResubmit runs a workflow again: same spec, cancel cleared, Custody's labels and every
// annotation (an approval above all) left behind, parameters replaced when asked.
func TestResubmit(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	old := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata:
  name: pay-invoice-4711
  labels: {app: invoices, custody.dev/cronworkflow: nightly}
  annotations: {approve.custody.dev/post-payment: '{"approvedBy":"bob"}'}
spec:
  parameters: [{name: invoice, value: "4711"}, {name: amount, value: "12000"}]
  cancel: true
  suspend: true
  reuseFrom: pay-invoice-4711-first
  timeout: 1h
  steps:
  - {name: post-payment, image: example.com/pay:1, args: ["$(params.invoice)"], approval: {approvers: {groups: [finance-controllers]}}}`),
		old); err != nil {
		t.Fatal(err)
	}
	old.Namespace = ns
	if err := env.Client.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ns, "", "resubmit", "pay-invoice-4711", "-p", "amount=9000", "--name", "pay-invoice-4711-again")
	if err != nil || !strings.Contains(out, "workflow/pay-invoice-4711-again created from workflow/pay-invoice-4711") {
		t.Fatalf("resubmit: %v\n%s", err, out)
	}
	wf := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711-again"}, wf); err != nil {
		t.Fatal(err)
	}
	want := old.Spec.DeepCopy()
	want.Cancel, want.Suspend, want.ReuseFrom = false, false, ""
	want.Parameters[1].Value = "9000"
	if !equality.Semantic.DeepEqual(wf.Spec, *want) {
		t.Errorf("spec %+v, want %+v", wf.Spec, *want)
	}
	if len(wf.Labels) != 1 || wf.Labels["app"] != "invoices" || len(wf.Annotations) != 0 {
		t.Errorf("labels %v, annotations %v: want app=invoices only, and no annotations", wf.Labels, wf.Annotations)
	}
	// --reuse-succeeded: the new run reuses the old one (not the one the old one reused), whose
	// parameters it cannot change.
	out, err = run(t, ns, "", "resubmit", "pay-invoice-4711", "--reuse-succeeded", "--name", "pay-invoice-4711-rest")
	if err != nil || !strings.Contains(out, "workflow/pay-invoice-4711-rest created from workflow/pay-invoice-4711, reusing the steps "+
		"that succeeded there") {
		t.Fatalf("resubmit --reuse-succeeded: %v\n%s", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pay-invoice-4711-rest"}, wf); err != nil {
		t.Fatal(err)
	}
	if wf.Spec.ReuseFrom != "pay-invoice-4711" || wf.Spec.Parameters[1].Value != "12000" || wf.Spec.Cancel {
		t.Errorf("resubmit --reuse-succeeded: reuseFrom %q, parameters %v, cancel %v", wf.Spec.ReuseFrom, wf.Spec.Parameters, wf.Spec.Cancel)
	}
	// Without --name, a generated one.
	if out, err := run(t, ns, "", "resubmit", "pay-invoice-4711"); err != nil || !strings.Contains(out, "workflow/pay-invoice-4711-") {
		t.Errorf("resubmit: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"resubmit", "pay-invoice-4711", "-p", "currency=EUR"}, `workflow pay-invoice-4711 has no parameter "currency" (it has: invoice, amount)`},
		{[]string{"resubmit", "nope"}, "workflow " + ns + "/nope not found"},
		{[]string{"resubmit", "pay-invoice-4711", "--reuse-succeeded", "-p", "amount=1"}, "-p cannot change them"},
	} {
		if _, err := run(t, ns, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	// A run of a template may set a parameter the old run left at its default.
	tplRun, err := resubmission(&custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{
		WorkflowTemplateRef: &custodyv1alpha1.WorkflowTemplateRef{Name: "db-backup"},
		Parameters:          []custodyv1alpha1.Parameter{{Name: "database", Value: "orders"}}}},
		[]custodyv1alpha1.Parameter{{Name: "retention", Value: "90d"}}, "", false)
	if err != nil || len(tplRun.Spec.Parameters) != 2 || tplRun.Spec.WorkflowTemplateRef.Name != "db-backup" {
		t.Errorf("template run: %v, %+v", err, tplRun)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{45 * time.Second: "45s", 3 * time.Minute: "3m", 125 * time.Minute: "2h5m",
		2 * time.Hour: "2h", 100 * time.Hour: "4d", -90 * time.Second: "-1m"} {
		if got := age(d); got != want {
			t.Errorf("age(%s) = %s, want %s", d, got, want)
		}
	}
}

// TestLint: lint reads files, directories (skipping hidden ones and other extensions) and
// standard input, prints each problem with its source, and fails when any would be refused.
func TestLint(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const good = "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: ok}\nspec:\n  steps: [{name: a, image: example.com/a:1}]\n"
	const bad = "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: loop}\nspec:\n  steps: [{name: a, image: example.com/a:1, dependsOn: [a]}]\n"
	write("apps/ok.yaml", good)
	write("apps/notes.txt", bad)      // not a manifest
	write(".git/objects/x.yaml", bad) // hidden
	write("apps/cm.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	if out, err := run(t, "", "", "lint", dir); err != nil || !strings.Contains(out, "1 Custody objects checked: 0 errors, 0 warnings") {
		t.Errorf("lint of a clean directory: %v\n%s", err, out)
	}
	write("apps/loop.yaml", "---\n"+good+"---\n"+bad)
	out, err := run(t, "", "", "lint", dir)
	if err == nil || !strings.Contains(err.Error(), "1 problems") ||
		!strings.Contains(out, filepath.Join(dir, "apps/loop.yaml")+"#2: Workflow loop: spec.steps[0]: Invalid value: a step cannot depend on itself") ||
		!strings.Contains(out, "3 Custody objects checked: 1 errors") {
		t.Errorf("lint of a directory with a cycle: %v\n%s", err, out)
	}
	if out, err := run(t, "", bad, "lint", "-"); err == nil || !strings.Contains(out, "<stdin>: Workflow loop:") {
		t.Errorf("lint of standard input: %v\n%s", err, out)
	}
	if _, err := run(t, "", "", "lint", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("lint of a file that does not exist succeeded")
	}
}

// TestWait: wait (and run --wait) exits 0 for a run that succeeded, with an error naming the
// outcome and its reason for one that failed, and gives up after --timeout on one still running.
// TestWaitShowsWhatApproversAreAsked: following a run waiting for an approver, the CI job's log
// says what the approval lets run, under the step's line, and the tree at the end says it again.
func TestWaitShowsWhatApproversAreAsked(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	gated := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{{Name: "deploy",
		Image: "example.com/d:1", Args: []string{"--env", "prod"}, Approval: &custodyv1alpha1.StepApproval{
			Approvers: custodyv1alpha1.Approvers{Users: []string{"bob"}}}}}}}
	gated.Namespace, gated.Name = ns, "gated"
	if err := env.Client.Create(ctx, gated); err != nil {
		t.Fatal(err)
	}
	gated.Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, Progress: "0/1",
		Steps: []custodyv1alpha1.StepStatus{{Name: "deploy", Phase: custodyv1alpha1.StepWaitingForApproval,
			Reason: custodyv1alpha1.ReasonWaitingForApproval, Message: "Waiting for approval by user bob"}}}
	if err := env.Client.Status().Update(ctx, gated); err != nil {
		t.Fatal(err)
	}
	gatedOut, err := run(t, ns, "", "wait", "gated", "--timeout", "2s")
	if err == nil || !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  deploy  WaitingForApproval: Waiting for approval by user bob\n`+
		`          to approve: image example.com/d:1\n            args: --env prod\n`).MatchString(gatedOut) ||
		strings.Count(gatedOut, "to approve: image example.com/d:1") != 2 {
		t.Errorf("wait for a run waiting for an approver: %v\n%s", err, gatedOut)
	}
}

func TestWait(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	mk := func(name string, status custodyv1alpha1.WorkflowStatus) {
		t.Helper()
		wf := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{{Name: "build", Image: "example.com/b:1"}}}}
		wf.Namespace, wf.Name = ns, name
		if err := env.Client.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
		wf.Status = status
		if err := env.Client.Status().Update(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	cond := func(t, reason, msg string) []metav1.Condition {
		return []metav1.Condition{{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}}
	}
	mk("green", custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowSucceeded, Progress: "1/1",
		Steps: []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepSucceeded}}})
	mk("red", custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowFailed, Progress: "1/1",
		Conditions: cond(custodyv1alpha1.ConditionStalled, custodyv1alpha1.ReasonFailed, "Step build failed"),
		Steps:      []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepFailed}}})
	mk("slow", custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, Progress: "0/1", StartTime: &metav1.Time{Time: time.Now()},
		Steps: []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepRunning}}})

	if out, err := run(t, ns, "", "wait", "green"); err != nil || !strings.Contains(out, "/green  Succeeded") {
		t.Errorf("wait for a run that succeeded: %v\n%s", err, out)
	}
	// Cancelling a run that ended changes nothing, and records nothing.
	_, err := run(t, ns, "", "cancel", "green")
	green := &custodyv1alpha1.Workflow{}
	if gerr := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "green"}, green); gerr != nil || green.Spec.Cancel ||
		err == nil || err.Error() != "workflow "+ns+"/green already ended (Succeeded): there is nothing to cancel" {
		t.Errorf("cancel of a run that succeeded: %v (%v), spec.cancel=%v", err, gerr, green.Spec.Cancel)
	}
	// A finished run with a ttlAfterFinished says when it goes.
	short := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{TTLAfterFinished: &metav1.Duration{Duration: 24 * time.Hour},
		Steps: []custodyv1alpha1.Step{{Name: "build", Image: "example.com/b:1"}}}}
	short.Namespace, short.Name = ns, "short"
	if err := env.Client.Create(ctx, short); err != nil {
		t.Fatal(err)
	}
	short.Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowSucceeded, Progress: "1/1",
		CompletionTime: &metav1.Time{Time: now.Add(-90 * time.Minute)}}
	if err := env.Client.Status().Update(ctx, short); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, ns, "", "get", "short"); err != nil || !strings.Contains(out, "\n   deleted in 22h30m, with its Jobs (ttlAfterFinished 24h0m0s)\n") {
		t.Errorf("get of a run with a ttlAfterFinished: %v\n%s", err, out)
	}
	if out, err := run(t, ns, "", "wait", "red"); err == nil || err.Error() != "workflow "+ns+"/red Failed (Failed): Step build failed" ||
		!strings.Contains(out, "└─ build  Failed") || !strings.Contains(out, "/red  Failed  1/1 steps ended  not started\n   Step build failed (Failed)\n") {
		t.Errorf("wait for a run that failed: %v\n%s", err, out)
	}
	// A run followed while it goes: a timed line per step change, the tree once, at the end.
	mk("moving", custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, Progress: "0/1", StartTime: &metav1.Time{Time: time.Now()},
		Steps: []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepRunning, Reason: custodyv1alpha1.StepReasonStarted, Attempt: 1}}})
	go func() {
		time.Sleep(1500 * time.Millisecond)
		wf := &custodyv1alpha1.Workflow{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "moving"}, wf); err != nil {
			t.Error(err)
			return
		}
		wf.Status.Steps[0] = custodyv1alpha1.StepStatus{Name: "build", Phase: custodyv1alpha1.StepRetrying, Attempt: 1,
			Message: "Attempt 1 failed (JobFailed: the step container exited with code 3 (Error))"}
		if err := env.Client.Status().Update(ctx, wf); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(1500 * time.Millisecond)
		wf.Status.Phase, wf.Status.Progress = custodyv1alpha1.WorkflowSucceeded, "1/1"
		wf.Status.Steps[0] = custodyv1alpha1.StepStatus{Name: "build", Phase: custodyv1alpha1.StepSucceeded, Attempt: 2}
		if err := env.Client.Status().Update(ctx, wf); err != nil {
			t.Error(err)
		}
	}()
	followed, err := run(t, ns, "", "wait", "moving")
	lines := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  (.*)$`).FindAllStringSubmatch(followed, -1)
	changes := make([]string, 0, len(lines))
	for _, l := range lines {
		changes = append(changes, l[1])
	}
	want := []string{"build  Running (Started)  attempt 1",
		"build  Retrying  attempt 1: Attempt 1 failed (JobFailed: the step container exited with code 3 (Error))",
		"build  Succeeded  attempt 2"}
	if err != nil || !reflect.DeepEqual(changes, want) || strings.Count(followed, "/moving  ") != 1 ||
		!strings.Contains(followed, "└─ build  Succeeded  attempt 2") {
		t.Errorf("wait for a run that retried and succeeded: %v, step changes %q, want %q\n%s", err, changes, want, followed)
	}

	// Nothing changes but the clock (a real one here, and the run's duration with it): the tree
	// is printed once, not every second.
	var out bytes.Buffer
	cmd := NewCommandWithClient(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out}, env.Client, ns, time.Now)
	cmd.SetArgs([]string{"wait", "slow", "--timeout", "3s"})
	if err := cmd.Execute(); err == nil || err.Error() != "workflow "+ns+"/slow is still Running after 3s" ||
		strings.Count(out.String(), "/slow  Running") != 1 || !strings.Contains(out.String(), "running for") {
		t.Errorf("wait with a timeout: %v\n%s", err, out.String())
	}
}

// TestRunFromCronWorkflow: run --from cronworkflow/NAME starts what the CronWorkflow runs, now,
// as a run of the user's own (none of the CronWorkflow's labels, not counted as one of its runs).
func TestRunFromCronWorkflow(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cw := &custodyv1alpha1.CronWorkflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: nightly-db-backup, labels: {team: data}}
spec:
  schedule: "0 2 * * *"
  workflowSpec:
    parameters: [{name: database, value: orders}, {name: retention, value: 30d}]
    steps: [{name: dump, image: example.com/dump:1, args: ["$(params.database)", "$(params.retention)"]}]`), cw); err != nil {
		t.Fatal(err)
	}
	cw.Namespace = ns
	if err := env.Client.Create(ctx, cw); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ns, "", "run", "--from", "cronworkflow/nightly-db-backup", "-p", "retention=90d", "--name", "backup-now")
	if err != nil || !strings.Contains(out, "workflow/backup-now created from cronworkflow/nightly-db-backup, now, not as one of its scheduled runs") {
		t.Fatalf("run --from: %v\n%s", err, out)
	}
	wf := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "backup-now"}, wf); err != nil {
		t.Fatal(err)
	}
	want := cw.Spec.WorkflowSpec.DeepCopy()
	want.Parameters[1].Value = "90d"
	if !equality.Semantic.DeepEqual(wf.Spec, *want) || len(wf.Labels) != 0 || len(wf.OwnerReferences) != 0 {
		t.Errorf("run of the CronWorkflow: spec %+v, labels %v, owners %v; want its workflowSpec with retention 90d, nothing else",
			wf.Spec, wf.Labels, wf.OwnerReferences)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--from", "cronjob/nightly-db-backup"}, `--from "cronjob/nightly-db-backup": write cronworkflow/NAME`},
		{[]string{"run", "db-backup", "--from", "cronworkflow/nightly-db-backup"}, "not both"},
		{[]string{"run"}, "name a WorkflowTemplate, or a CronWorkflow"},
		{[]string{"run", "--from", "ccwf/weekly"}, "cronworkflow " + ns + "/weekly not found"},
	} {
		if _, err := run(t, ns, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestResults: `results` prints a finished run's results for a script (all as NAME=VALUE, or one
// value alone), refuses while the run is going, and tells a result not produced from one never
// declared; get shows them under the tree, a long one cut to a line.
func TestResults(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	long := strings.Repeat("x", 150)
	mk := func(name string, phase custodyv1alpha1.WorkflowPhase, results []custodyv1alpha1.StepResult) {
		t.Helper()
		wf := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{
			Steps: []custodyv1alpha1.Step{{Name: "build", Image: "example.com/b:1", Results: []custodyv1alpha1.ResultSpec{{Name: "digest"}}}},
			Results: []custodyv1alpha1.WorkflowResultSpec{{Name: "image", Value: "app@$(steps.build.results.digest)"},
				{Name: "notes", Value: "$(steps.build.results.digest)"}, {Name: "report", Value: "$(steps.build.results.digest)"}},
		}}
		wf.Namespace, wf.Name = ns, name
		if err := env.Client.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
		wf.Status = custodyv1alpha1.WorkflowStatus{Phase: phase, Progress: "1/1", Results: results,
			Steps: []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepSucceeded}}}
		if err := env.Client.Status().Update(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	mk("done", custodyv1alpha1.WorkflowSucceeded, []custodyv1alpha1.StepResult{
		{Name: "image", Value: "app@sha256:abc"}, {Name: "notes", Value: "first line\nsecond line"}})
	mk("going", custodyv1alpha1.WorkflowRunning, nil)
	mk("long", custodyv1alpha1.WorkflowFailed, []custodyv1alpha1.StepResult{{Name: "image", Value: long}})

	for _, tc := range []struct {
		args      []string
		want, err string
	}{
		{args: []string{"done"}, want: "image=app@sha256:abc\nnotes=first line\nsecond line\n"},
		{args: []string{"done", "image"}, want: "app@sha256:abc\n"},
		{args: []string{"long", "image"}, want: long + "\n"},
		{args: []string{"done", "report"}, err: `workflow ` + ns + `/done did not produce result "report": a step it reads did not succeed`},
		{args: []string{"done", "digest"}, err: `workflow ` + ns + `/done has no result "digest" (it has image, notes, report)`},
		{args: []string{"going", "image"}, err: "workflow " + ns + "/going is Running: its results are computed when it ends"},
	} {
		out, err := run(t, ns, "", append([]string{"results"}, tc.args...)...)
		switch {
		case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("results %v: error %v, want %q", tc.args, err, tc.err)
		case tc.err == "" && (err != nil || out != tc.want):
			t.Errorf("results %v: %v\n%q, want %q", tc.args, err, out, tc.want)
		}
	}

	out, err := run(t, ns, "", "get", "done")
	if err != nil || !strings.HasSuffix(out, "results\n   image = app@sha256:abc\n   notes = first line... (kubectl custody results done notes)\n") {
		t.Errorf("get done: %v\n%s", err, out)
	}
	out, err = run(t, ns, "", "get", "long")
	if err != nil || !strings.Contains(out, "   image = "+strings.Repeat("x", 97)+"... (kubectl custody results long image)\n") {
		t.Errorf("get long: %v\n%s", err, out)
	}
}

// TestApproveHint: RBAC's refusal of an approval says what an approver lacks; admission's refusal
// of a listed approver's approval is left as it is.
func TestApproveHint(t *testing.T) {
	wf := schema.GroupResource{Group: "custody.dev", Resource: "workflows"}
	rbac := apierrors.NewForbidden(wf, "release", errors.New(`User "bob" cannot patch resource "workflows" in API group "custody.dev" in the namespace "ci"`))
	if got := approveHint(rbac, "workflows", "the built-in edit role").Error(); !strings.HasSuffix(got,
		"an approval is an annotation: approvers need patch on workflows.custody.dev in the namespace (the built-in edit role has it); "+
			"admission then checks that they are listed") || !strings.HasPrefix(got, rbac.Error()) {
		t.Errorf("RBAC refusal: %s", got)
	}
	denied := apierrors.NewForbidden(wf, "release", errors.New(`admission webhook "validate.custody.dev" denied the request: bob is the creator`))
	if got := approveHint(denied, "workflows", "the built-in edit role"); got.Error() != denied.Error() {
		t.Errorf("admission's refusal changed: %v", got)
	}
}

// TestGetCronWorkflow: get cronworkflow/NAME shows the schedule, its state, the grants its runs
// request (whether each can issue, when it ends, whether it covers the scheduled runs: one that
// names the CronWorkflow covers none) and the runs it controls, the newest first; a Workflow that
// only carries its label is not one of them.
func TestGetCronWorkflow(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cw := &custodyv1alpha1.CronWorkflow{Spec: custodyv1alpha1.CronWorkflowSpec{Schedule: "0 2 * * *", TimeZone: ptr.To("Europe/Berlin"),
		ConcurrencyPolicy: custodyv1alpha1.ConcurrencyForbid,
		WorkflowSpec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{
			{Name: "dump", Image: "example.com/pg:16", Credentials: []string{"db-backup", "backup-bucket"}},
			{Name: "prune", Image: "example.com/prune:1", DependsOn: []string{"dump"}, Credentials: []string{"backup-bucket", "archive"}}}}}}
	cw.Namespace, cw.Name = ns, "nightly-db-backup"
	if err := env.Client.Create(ctx, cw); err != nil {
		t.Fatal(err)
	}
	at := func(h int) *metav1.Time { return &metav1.Time{Time: now.Add(time.Duration(h) * time.Hour)} }
	cw.Status = custodyv1alpha1.CronWorkflowStatus{NextScheduleTime: at(13), LastScheduleTime: at(-11),
		Schedule:           &custodyv1alpha1.ObservedSchedule{Schedule: "0 2 * * *", TimeZone: "Europe/Berlin", Since: *at(-3)},
		LastSuccessfulTime: &metav1.Time{Time: at(-35).Add(12 * time.Minute)}, LastSuccessfulRun: "nightly-db-backup-29933250",
		Conditions: []metav1.Condition{{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Scheduled",
			Message: "Next run at 2026-11-30T00:30:00Z", LastTransitionTime: metav1.Now()}}}
	if err := env.Client.Status().Update(ctx, cw); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, scheduled *metav1.Time, owned bool, status custodyv1alpha1.WorkflowStatus) {
		t.Helper()
		wf := &custodyv1alpha1.Workflow{Spec: cw.Spec.WorkflowSpec}
		wf.Namespace, wf.Name = ns, name
		wf.Labels = map[string]string{custodyv1alpha1.LabelCronWorkflow: cw.Name}
		wf.Annotations = map[string]string{custodyv1alpha1.AnnotationScheduledTime: scheduled.UTC().Format(time.RFC3339)}
		if owned {
			wf.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(cw, custodyv1alpha1.GroupVersion.WithKind("CronWorkflow"))}
		}
		if err := env.Client.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
		wf.Status = status
		if err := env.Client.Status().Update(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	mk("nightly-db-backup-29933250", at(-35), true, custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowSucceeded,
		Progress: "1/1", StartTime: at(-35), CompletionTime: &metav1.Time{Time: at(-35).Add(12 * time.Minute)}})
	mk("nightly-db-backup-29934690", at(-11), true, custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning,
		Progress: "0/1", StartTime: at(-11), Conditions: []metav1.Condition{{Type: custodyv1alpha1.ConditionReady,
			Status: metav1.ConditionFalse, Reason: custodyv1alpha1.ReasonWaitingForApproval, Message: "Waiting for approval",
			LastTransitionTime: metav1.Now()}}})
	mk("imposter", at(-2), false, custodyv1alpha1.WorkflowStatus{})
	// A grant that names the CronWorkflow, whose approval is due for review, and one that selects
	// its runs and ends in 20 days; archive does not exist.
	createWithStatus(t, ns, &custodyv1alpha1.CredentialGrant{}, `
metadata: {name: db-backup, annotations: {approve.custody.dev/grant: '{"approvedBy":"bob","approvedAt":"2026-11-04T12:00:00Z"}'}}
spec:
  subjects: [{workflowName: nightly-db-backup, steps: [dump]}]
  credential: {secret: {name: db, keys: [password]}}
  approval: {required: true, approvers: {users: [bob]}, validFor: 720h}
status:
  approval: {approvedBy: bob, approvedAt: "2026-11-04T12:00:00Z"}
  conditions:
  - {type: Ready, status: "True", reason: Active, message: ok, lastTransitionTime: "2026-11-29T11:00:00Z"}
  - {type: Approved, status: "True", reason: Approved, message: ok, lastTransitionTime: "2026-11-29T11:00:00Z"}
  - {type: ReviewDue, status: "True", reason: ApprovalLapsesSoon, message: soon, lastTransitionTime: "2026-11-29T11:00:00Z"}`)
	createWithStatus(t, ns, &custodyv1alpha1.CredentialGrant{}, `
metadata: {name: backup-bucket}
spec:
  subjects: [{workflowSelector: {matchLabels: {custody.dev/cronworkflow: nightly-db-backup}}, steps: [dump, prune]}]
  credential: {secret: {name: bucket, keys: [key]}}
  expiresAt: "2026-12-19T12:00:00Z"
status:
  conditions: [{type: Ready, status: "True", reason: Active, message: ok, lastTransitionTime: "2026-11-29T11:00:00Z"}]`)

	out, err := run(t, ns, "", "get", "cronworkflow/nightly-db-backup")
	if err != nil {
		t.Fatal(err, out)
	}
	golden(t, "cronworkflow.txt", ns, out)
	if out, err := run(t, ns, "", "get", "ccwf/nightly-db-backup", "-o", "json"); err != nil || !strings.Contains(out, `"schedule": "0 2 * * *"`) {
		t.Errorf("get ccwf/... -o json: %v\n%s", err, out)
	}
	// Suspended (by kubectl custody suspend), it says so instead of when the next run is.
	if out, err := run(t, ns, "", "suspend", "cronworkflow/nightly-db-backup"); err != nil ||
		out != "cronworkflow/nightly-db-backup suspended\n" {
		t.Errorf("suspend cronworkflow/...: %v %q", err, out)
	}
	if out, err := run(t, ns, "", "get", "cronworkflow/nightly-db-backup"); err != nil ||
		!strings.Contains(out, "\n   suspended: no run is created until spec.suspend is false") || strings.Contains(out, "next run") {
		t.Errorf("get of a suspended CronWorkflow: %v\n%s", err, out)
	}
	if _, err := run(t, ns, "", "get", "cronworkflow/nightly-db-backup", "-w"); err == nil {
		t.Error("get -w of a CronWorkflow: no error")
	}
	if _, err := run(t, ns, "", "get", "job/nightly-db-backup"); err == nil ||
		!strings.Contains(err.Error(), "name a workflow (NAME or workflow/NAME) or a CronWorkflow (cronworkflow/NAME)") {
		t.Errorf("get job/...: %v", err)
	}
	if out, err := run(t, ns, "", "resume", "ccwf/nightly-db-backup"); err != nil || out != "cronworkflow/nightly-db-backup resumed\n" {
		t.Errorf("resume ccwf/...: %v %q", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cw), cw); err != nil || cw.Spec.Suspend {
		t.Errorf("after resume: %v, spec.suspend=%v", err, cw.Spec.Suspend)
	}
}

// TestSummarizeApproval: the inventory's APPROVAL column says whether an approval lapsed
// (approval.validFor) or is due for review, or no longer covers its role's rules, not only who
// gave it.
func TestSummarizeApproval(t *testing.T) {
	g := &custodyv1alpha1.CredentialGrant{}
	g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"bob"}`}
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true}
	g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob"}}
	if got := summarize(g).Approval; got != "approved by bob" {
		t.Errorf("approved: %q", got)
	}
	g.Status.Conditions = []metav1.Condition{{Type: custodyv1alpha1.ConditionApproved, Status: metav1.ConditionFalse,
		Reason: custodyv1alpha1.ReasonApprovalExpired}}
	if got := summarize(g).Approval; got != "LAPSED (approved by bob)" {
		t.Errorf("lapsed: %q", got)
	}
	g.Status.Conditions[0].Reason = custodyv1alpha1.ReasonRoleChanged
	if got := summarize(g).Approval; got != "ROLE CHANGED (approved by bob)" {
		t.Errorf("the role changed since: %q", got)
	}
	g.Status.Conditions = []metav1.Condition{
		{Type: custodyv1alpha1.ConditionApproved, Status: metav1.ConditionTrue, Reason: custodyv1alpha1.ReasonApproved},
		{Type: custodyv1alpha1.ConditionReviewDue, Status: metav1.ConditionTrue, Reason: custodyv1alpha1.ReasonApprovalLapsesSoon}}
	g.Spec.Approval.ValidFor = &metav1.Duration{Duration: 720 * time.Hour}
	g.Status.Approval.ApprovedAt = metav1.NewTime(now)
	sum := summarize(g)
	if sum.Approval != "REVIEW DUE (approved by bob)" || !sum.ReviewDue || sum.ApprovalLapsesAt == nil ||
		!sum.ApprovalLapsesAt.Equal(&metav1.Time{Time: now.Add(720 * time.Hour)}) {
		t.Errorf("lapses within its review window: %q, reviewDue %v, lapses at %v", sum.Approval, sum.ReviewDue, sum.ApprovalLapsesAt)
	}
}

// TestApprovalLine: get grant says until when an approval under approval.validFor stands, and
// from when it is due for review; once it is due, the summary says so (and the REVIEW DUE line,
// from the grant's condition, how to approve it again), not the approval line a second time.
func TestApprovalLine(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	g := &custodyv1alpha1.CredentialGrant{}
	g.Name = "erp"
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, ValidFor: &metav1.Duration{Duration: 720 * time.Hour},
		Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob"}}}
	approvedAgo := func(d time.Duration) *custodyv1alpha1.CredentialGrant {
		g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{
			ApprovedBy: "bob", ApprovedAt: metav1.NewTime(now.Add(-d))}}
		return g
	}
	if got, want := approvalLine(approvedAgo(240*time.Hour), "approved by bob", now),
		"required of user bob; approved by bob at 2026-11-21T12:00:00Z, until 2026-12-21T12:00:00Z (in 20d); "+
			"review due from 2026-12-14T00:00:00Z (in 12d)"; got != want {
		t.Errorf("before the review window:\n got %q\nwant %q", got, want)
	}
	if got, want := approvalLine(approvedAgo(600*time.Hour), "REVIEW DUE (approved by bob)", now),
		"required of user bob; REVIEW DUE (approved by bob) at 2026-11-06T12:00:00Z, until 2026-12-06T12:00:00Z (in 5d)"; got != want {
		t.Errorf("in the review window:\n got %q\nwant %q", got, want)
	}
}

// TestGrantApproved: approve grant says until when the approval it gave stands, and from when it is
// due for review, when the grant's approval lapses.
func TestGrantApproved(t *testing.T) {
	g := &custodyv1alpha1.CredentialGrant{}
	g.Name = "erp"
	stamp := `{"approvedBy":"carol","approvedAt":"2026-12-01T12:00:00Z"}`
	g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: stamp}
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true}
	if got, want := grantApproved(g), "credentialgrant/erp approved: "+stamp; got != want {
		t.Errorf("without validFor: %q, want %q", got, want)
	}
	g.Spec.Approval.ValidFor = &metav1.Duration{Duration: 2160 * time.Hour}
	if got, want := grantApproved(g), "credentialgrant/erp approved: "+stamp+"\n   it stands until 2027-03-01T12:00:00Z "+
		"(approval.validFor 2160h0m0s); review due from 2027-02-15T12:00:00Z"; got != want {
		t.Errorf("with validFor:\n got %q\nwant %q", got, want)
	}
}

// TestHandsOut: what get grant/NAME says a grant hands out, for each kind: names and lifetimes,
// never a value.
func TestHandsOut(t *testing.T) {
	cases := map[string]struct {
		credential string
		want       string
	}{
		"role": {`{kubernetesRole: {kind: ClusterRole, name: view, audience: vault.example.com}}`,
			"ClusterRole view, bound to the step's own ServiceAccount, with a token for vault.example.com"},
		"secret": {`{secret: {name: erp-api, keys: [token, user], maxAge: 720h}}`,
			"keys token, user of Secret erp-api, as the step's own copy (to be rotated every 30d)"},
		"spiffe": {`{spiffe: {dnsNames: [erp.example], audiences: [erp], x509TTL: 10m, jwtTTL: 5m}}`,
			"SVID properties: DNS names erp.example; JWT audiences erp; X.509-SVIDs for 10m; JWT-SVIDs for 5m"},
	}
	for name, c := range cases {
		var cred custodyv1alpha1.Credential
		if err := yaml.UnmarshalStrict([]byte(c.credential), &cred); err != nil {
			t.Fatal(err)
		}
		if got := handsOut(cred); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}
