package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/spiretest"
)

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := cluster.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// requireReadOnlyRootFilesystem makes the API server refuse, in namespace ns, any pod with a
// container whose root filesystem is not read-only, and returns once it does.
func requireReadOnlyRootFilesystem(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	name := "require-read-only-root-filesystem-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.containers.all(c, has(c.securityContext) && " +
					"has(c.securityContext.readOnlyRootFilesystem) && c.securityContext.readOnlyRootFilesystem)",
				Message: "every container's root filesystem must be read-only",
			}},
		}}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}},
		}}
	for _, obj := range []client.Object{policy, binding} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), obj) })
	}
	// A pod that passes the restricted Pod Security Standard but writes to its root filesystem.
	writable := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "writable-root"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/tools:1",
			SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}}}}}
	eventually(t, 30*time.Second, "the policy refuses a pod with a writable root filesystem", func() error {
		err := cluster.Client.Create(ctx, writable.DeepCopy(), client.DryRunAll)
		if err == nil {
			return errors.New("admitted")
		}
		if !strings.Contains(err.Error(), "every container's root filesystem must be read-only") {
			return err
		}
		return nil
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: gave up after %s: %v", what, timeout, err)
}

// TestDiamondWorkflowRunsRealJobs runs a diamond on the local cluster: the Job controller creates
// pods, the scheduler places them on KWOK nodes in a namespace that enforces the restricted Pod
// Security Standard, KWOK runs them to completion, and the workflow succeeds.
//
// The namespace also has a policy that many clusters enforce besides Pod Security (Kyverno's
// require-ro-rootfs, Gatekeeper's read-only root filesystem): every container's root filesystem
// must be read-only. It is a ValidatingAdmissionPolicy, the API server's own CEL policies.
func TestDiamondWorkflowRunsRealJobs(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	requireReadOnlyRootFilesystem(ctx, t, ns)
	// publish holds a role and its own copy of a Secret, only while it runs.
	createPublishCredentials(ctx, t, ns, "diamond", "publish")
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: diamond}
spec:
  parameters: [{name: revision, value: main}]
  steps:
  - {name: fetch, image: registry.example.com/ci/git:2.45, args: [fetch, "$(params.revision)"]}
  - {name: lint, image: registry.example.com/ci/lint:1.0, dependsOn: [fetch], timeout: 5m}
  - {name: test, image: registry.example.com/ci/test:1.0, dependsOn: [fetch]}
  - {name: publish, image: registry.example.com/ci/publish:1.0, dependsOn: [lint, test], credentials: [publish-role, registry]}
`)

	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)

	nodes := map[string]bool{}
	for _, n := range cluster.Nodes {
		nodes[n] = true
	}
	for _, st := range wf.Status.Steps {
		if st.Phase != custodyv1alpha1.StepSucceeded || st.Attempt != 1 {
			t.Errorf("step %s: %s on attempt %d", st.Name, st.Phase, st.Attempt)
		}
		if !nodes[st.NodeName] || st.PodName == "" {
			t.Errorf("step %s ran as pod %q on node %q, want a KWOK node", st.Name, st.PodName, st.NodeName)
		}
		job := &batchv1.Job{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: st.JobName}, job); err != nil {
			t.Fatalf("Job of %s: %v", st.Name, err)
		}
		if job.Status.Succeeded != 1 {
			t.Errorf("Job %s: succeeded=%d", job.Name, job.Status.Succeeded)
		}
		// The manager runs with --step-user-namespaces: the Job controller's pod of the step, admitted
		// under the restricted Pod Security Standard and the read-only root policy, has its own.
		pod := &corev1.Pod{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: st.PodName}, pod); err != nil {
			t.Fatalf("pod of %s: %v", st.Name, err)
		}
		if pod.Spec.HostUsers == nil || *pod.Spec.HostUsers {
			t.Errorf("pod %s: hostUsers %v, want false", pod.Name, pod.Spec.HostUsers)
		}
	}
	// Publish started only after both branches completed.
	lint, test, publish := step(wf, "lint"), step(wf, "test"), step(wf, "publish")
	if publish.StartTime.Before(lint.CompletionTime) || publish.StartTime.Before(test.CompletionTime) {
		t.Errorf("publish started at %s, before lint (%s) or test (%s) ended", publish.StartTime, lint.CompletionTime, test.CompletionTime)
	}
	// Every attempt had its own SPIFFE identity while it ran, revoked when it ended.
	for _, st := range wf.Status.Steps {
		if st.Identity == nil || st.Identity.State != custodyv1alpha1.IdentityRevoked || st.Identity.RegisteredTime == nil ||
			!strings.HasPrefix(st.SPIFFEID, "spiffe://"+spiretest.TrustDomain+"/ns/"+ns+"/workflow/diamond/step/"+st.Name+"/run/") {
			t.Errorf("step %s: SPIFFE ID %q, identity %+v", st.Name, st.SPIFFEID, st.Identity)
		}
	}
	reg, err := spire.Dial(ctx, spire.Options{Address: spireServer.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close() }()
	eventually(t, 30*time.Second, "no SPIRE entries left", func() error {
		entries, err := reg.List(ctx, identity.DefaultEntryIDPrefix+string(wf.UID))
		if err != nil {
			return err
		}
		if len(entries) != 0 {
			return fmt.Errorf("%d entries of the workflow remain", len(entries))
		}
		return nil
	})
	// What publish held was issued and revoked; nothing that carried it is left.
	checkCredentialsRevoked(ctx, t, ns, wf)
	// No attempt identity outlives its attempt.
	eventually(t, 30*time.Second, "step ServiceAccounts deleted", func() error {
		var sas corev1.ServiceAccountList
		if err := cluster.Client.List(ctx, &sas, client.InNamespace(ns),
			client.MatchingLabels{custodyv1alpha1.LabelWorkflow: wf.Name}); err != nil {
			return err
		}
		if len(sas.Items) != 0 {
			return fmt.Errorf("%d step ServiceAccounts remain", len(sas.Items))
		}
		return nil
	})
}

// TestFailingStepsOnARealCluster: steps whose containers exit non-zero (KWOK fails their pods)
// fail as the real Job controller reports it: each retry is a new Job, the exit code is in the
// step's message, a step with onFailure: Continue lets the workflow go on, and one without fails
// it; a retry with avoidFailedNodes is scheduled on another node; no attempt's ServiceAccount is
// left behind.
func TestFailingStepsOnARealCluster(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	fails := func(code string) string {
		return `env: [{name: ` + localcluster.ExitCodeEnv + `, value: "` + code + `"}]`
	}
	allowed := createWorkflow(ctx, t, ns, `
metadata: {name: advisory-lint}
spec:
  steps:
  - name: lint
    image: registry.example.com/ci/lint:1.0
    onFailure: Continue
    retries: {limit: 3, backoff: {duration: 1s}, when: "exitCode != 3"}  # 3: findings, not worth repeating
    `+fails("3")+`
  - {name: lint-report, image: registry.example.com/ci/report:1.0, dependsOn: [lint], when: "steps['lint'].phase == 'Failed'"}
  - {name: build, image: registry.example.com/ci/build:1.0, dependsOn: [lint]}
`)
	broken := createWorkflow(ctx, t, ns, `
metadata: {name: broken-build}
spec:
  steps:
  - name: build
    image: registry.example.com/ci/build:1.0
    retries: {limit: 1, backoff: {duration: 1s}, when: "exitCode != 3", avoidFailedNodes: true}
    `+fails("1")+`
  - {name: publish, image: registry.example.com/ci/publish:1.0, dependsOn: [build]}
`)
	// What a CI job that started them would do: wait, and fail with the run.
	if out, errOut, err := kubectlCustody(ns, "wait", "advisory-lint", "--timeout", "2m"); err != nil {
		t.Errorf("kubectl custody wait advisory-lint: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := kubectlCustody(ns, "wait", "broken-build", "--timeout", "2m"); err == nil ||
		!strings.HasPrefix(err.Error(), "workflow "+ns+"/broken-build Failed") {
		t.Errorf("kubectl custody wait broken-build: %v, want it to fail with the run", err)
	}
	waitPhase(ctx, t, allowed, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)
	waitPhase(ctx, t, broken, custodyv1alpha1.WorkflowFailed, 2*time.Minute)

	if st := step(allowed, "lint"); st.Phase != custodyv1alpha1.StepFailed || !strings.Contains(st.Message, "exited with code 3") ||
		!strings.HasPrefix(st.Message, "Failure allowed (onFailure: Continue)") || st.Attempt != 1 ||
		!strings.Contains(st.Message, "not retried: retries.when is false") {
		t.Errorf("lint: %s (%s) attempt %d %q, want Failed with exit code 3 on attempt 1, not retried, allowed", st.Phase, st.Reason,
			st.Attempt, st.Message)
	}
	for _, name := range []string{"lint-report", "build"} {
		if st := step(allowed, name); st.Phase != custodyv1alpha1.StepSucceeded {
			t.Errorf("%s: %s (%s), want Succeeded after lint's allowed failure", name, st.Phase, st.Reason)
		}
	}
	st := step(broken, "build")
	if st.Phase != custodyv1alpha1.StepFailed || st.Reason != custodyv1alpha1.ReasonRetriesExhausted || st.Attempt != 2 ||
		!strings.Contains(st.Message, "exited with code 1") {
		t.Errorf("build: %s (%s) attempt %d %q, want Failed (RetriesExhausted) on attempt 2 with exit code 1", st.Phase, st.Reason, st.Attempt, st.Message)
	}
	if p := step(broken, "publish"); p.Phase != custodyv1alpha1.StepSkipped || p.Reason != custodyv1alpha1.StepReasonDependencyNotSucceeded {
		t.Errorf("publish: %s (%s), want Skipped (DependencyNotSucceeded)", p.Phase, p.Reason)
	}
	var jobs batchv1.JobList
	if err := cluster.Client.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{custodyv1alpha1.LabelWorkflow: broken.Name}); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, j := range jobs.Items {
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				failed++
			}
		}
	}
	if len(jobs.Items) != 2 || failed != 2 {
		t.Errorf("broken-build has %d Jobs, %d of them Failed; want one failed Job per attempt (2)", len(jobs.Items), failed)
	}
	// avoidFailedNodes: kube-scheduler put the retry on the other node.
	if nodes := attemptNodes(ctx, t, broken); len(nodes) != 2 || nodes["1"] == "" || nodes["1"] == nodes["2"] {
		t.Errorf("broken-build's attempts ran on nodes %v, want attempt 2 on another node than attempt 1", nodes)
	}
	eventually(t, 30*time.Second, "step ServiceAccounts deleted", func() error {
		var sas corev1.ServiceAccountList
		if err := cluster.Client.List(ctx, &sas, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, sa := range sas.Items {
			if sa.Labels[custodyv1alpha1.LabelWorkflow] != "" {
				return fmt.Errorf("ServiceAccount %s of workflow %s remains", sa.Name, sa.Labels[custodyv1alpha1.LabelWorkflow])
			}
		}
		return nil
	})
}

// attemptNodes returns the node each attempt's pod of wf ran on, by attempt number.
func attemptNodes(ctx context.Context, t *testing.T, wf *custodyv1alpha1.Workflow) map[string]string {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(wf.Namespace), client.MatchingLabels{custodyv1alpha1.LabelWorkflow: wf.Name}); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]string{}
	for _, p := range pods.Items {
		nodes[p.Labels[custodyv1alpha1.LabelAttempt]] = p.Spec.NodeName
	}
	return nodes
}

// TestRerunReusesWhatSucceeded: a run cancelled at its approval gate is run again with
// `kubectl custody resubmit --reuse-succeeded`; admission lets it reuse the cancelled run (and
// refuses to reuse one that has not ended), the build step that succeeded is taken over with its
// result and starts no Job, and the gate waits again.
func TestRerunReusesWhatSucceeded(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	first := createWorkflow(ctx, t, ns, `
metadata: {name: release}
spec:
  steps:
  - name: build
    image: registry.example.com/ci/build:1.0
    results: [{name: digest}]
    env: [{name: CUSTODY_SANDBOX_RESULTS, value: '{"digest":"sha256:e2e"}'}]
  - name: deploy
    image: registry.example.com/ci/deploy:1.0
    dependsOn: [build]
    args: ["$(steps.build.results.digest)"]
    approval: {approvers: {users: [nobody]}}
`)
	eventually(t, 2*time.Minute, "build to succeed and deploy to wait for its approval", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(first), first); err != nil {
			return err
		}
		if st := step(first, "deploy"); st.Phase != custodyv1alpha1.StepWaitingForApproval {
			return fmt.Errorf("deploy is %s (%s)", st.Phase, st.Reason)
		}
		return nil
	})
	if _, errOut, err := kubectlCustody(ns, "cancel", "release"); err != nil {
		t.Fatalf("cancel: %v %s", err, errOut)
	}
	waitPhase(ctx, t, first, custodyv1alpha1.WorkflowCancelled, time.Minute)

	out, errOut, err := kubectlCustody(ns, "resubmit", "release", "--reuse-succeeded", "--name", "release-rest")
	if err != nil || !strings.Contains(out, "reusing the steps that succeeded there") {
		t.Fatalf("resubmit --reuse-succeeded: %v\n%s%s", err, out, errOut)
	}
	rest := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-rest"}}
	eventually(t, time.Minute, "release-rest's deploy to wait for its approval", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(rest), rest); err != nil {
			return err
		}
		if st := step(rest, "deploy"); st.Phase != custodyv1alpha1.StepWaitingForApproval {
			return fmt.Errorf("deploy is %s (%s)", st.Phase, st.Reason)
		}
		return nil
	})
	if st := step(rest, "build"); st.Phase != custodyv1alpha1.StepSucceeded || st.Reason != custodyv1alpha1.StepReasonReused ||
		st.JobName != "" || st.SPIFFEID != "" || len(st.Results) != 1 || st.Results[0].Value != "sha256:e2e" {
		t.Errorf("release-rest's build: %+v, want Reused with release's result and nothing of its own", st)
	}
	var jobs batchv1.JobList
	if err := cluster.Client.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{custodyv1alpha1.LabelWorkflow: "release-rest"}); err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 0 {
		t.Errorf("release-rest created %d Jobs; its build was reused and its deploy waits", len(jobs.Items))
	}
	// Admission: a run may not reuse one that is still going.
	if _, _, err := kubectlCustody(ns, "resubmit", "release-rest", "--reuse-succeeded"); err == nil ||
		!strings.Contains(err.Error(), "workflow release-rest has not ended") {
		t.Errorf("reusing a run that has not ended: %v, want admission to refuse it", err)
	}
}

// TestApproverRejectsAStep: an approver rejects a waiting step with `kubectl custody reject`, as
// herself (an approver needs only get and patch on Workflows): the real webhook refuses the run's
// creator and stamps her name around her reason, the step fails without a Job, the run fails, its
// finally step runs on the node, and `kubectl custody get` says who rejected it and why.
func TestApproverRejectsAStep(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: release}
spec:
  steps:
  - {name: build, image: registry.example.com/ci/build:1.0}
  - name: deploy
    image: registry.example.com/ci/deploy:1.0
    dependsOn: [build]
    approval: {approvers: {users: [carol]}}
  finally:
  - {name: report, image: registry.example.com/ci/report:1.0, when: "workflow.phase == 'Failed'"}
`)
	eventually(t, 2*time.Minute, "deploy to wait for its approval", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		if st := step(wf, "deploy"); st.Phase != custodyv1alpha1.StepWaitingForApproval {
			return fmt.Errorf("deploy is %s (%s)", st.Phase, st.Reason)
		}
		return nil
	})
	// Whoever is impersonated has none of the cluster admin's groups: both get what an approver needs.
	creator := wf.Annotations[custodyv1alpha1.AnnotationCreatedBy]
	for _, obj := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "approver", Namespace: ns}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{custodyv1alpha1.GroupVersion.Group}, Resources: []string{"workflows"}, Verbs: []string{"get", "patch"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "approver", Namespace: ns},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"},
				{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: creator}},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "approver"}},
	} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	// Until the authorizer has the binding, RBAC refuses first.
	eventually(t, 30*time.Second, "admission to refuse the creator's rejection", func() error {
		_, _, err := kubectlCustody(ns, "reject", "release", "deploy", "--reason", "mine", "--as", creator)
		switch {
		case err == nil:
			t.Fatalf("the creator (%s) rejected her own run", creator)
		case !strings.Contains(err.Error(), "who may not reject it"):
			return fmt.Errorf("the creator (%s) rejecting her own run: %w", creator, err)
		}
		return nil
	})
	const reason = "the staging soak failed; see INC-2231"
	out, errOut, err := kubectlCustody(ns, "reject", "release", "deploy", "--reason", reason, "--as", "carol")
	if err != nil || out != "workflow/release step deploy rejected by carol\n" {
		t.Fatalf("carol rejecting: %v\n%s%s", err, out, errOut)
	}
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowFailed, 2*time.Minute)
	st := step(wf, "deploy")
	if st.Reason != custodyv1alpha1.ReasonApprovalRejected || st.Rejection == nil || st.Rejection.RejectedBy != "carol" ||
		st.Rejection.Reason != reason || st.JobName != "" {
		t.Errorf("deploy: %s (%s) %q, rejection %+v, Job %q; want failed by carol's rejection without a Job",
			st.Phase, st.Reason, st.Message, st.Rejection, st.JobName)
	}
	if st := step(wf, "report"); st.Phase != custodyv1alpha1.StepSucceeded {
		t.Errorf("the finally step report is %s (%s), want it run after the rejection", st.Phase, st.Reason)
	}
	tree, _, err := kubectlCustody(ns, "get", "release")
	if want := "Rejected by carol: " + reason; err != nil || !strings.Contains(tree, want) {
		t.Errorf("get: %v, want %q in\n%s", err, want, tree)
	}
}

// TestProtectedStepPods: in a namespace labelled custody.dev/protect-step-pods=true the manager's
// admission (its own certificate, the configuration as config/webhook installs it) refuses exec
// into a step's pod, even to a cluster admin, and a pod as the attempt's ServiceAccount, or one that
// mounts the Secret the step is granted, that the Job controller did not create (kube-controller-
// manager's ReplicaSet controller, the same user here, included), and a token of the attempt's
// ServiceAccount; the step, which
// holds that grant, still runs (its pod mounts its copy) and the run goes on to succeed.
func TestProtectedStepPods(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	patch := []byte(`{"metadata":{"labels":{"custody.dev/protect-step-pods":"true"}}}`)
	if err := cluster.Client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	createPublishCredentials(ctx, t, ns, "release", "deploy")
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: release}
spec:
  steps: [{name: deploy, image: registry.example.com/ci/deploy:1.0, credentials: [publish-role, registry]}]
`)
	var pod, sa string
	eventually(t, time.Minute, "the step's pod", func() error {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{custodyv1alpha1.LabelWorkflow: "release"}); err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return errors.New("no pod yet")
		}
		pod, sa = pods.Items[0].Name, pods.Items[0].Spec.ServiceAccountName
		return nil
	})
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	err = cs.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").
		Param("container", "step").Param("command", "sh").Param("stdout", "true").Do(ctx).Error()
	if want := "pod " + pod + " runs step deploy (attempt 1) of workflow release"; err == nil || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "so nobody may exec into it") {
		t.Errorf("exec into the step's pod as a cluster admin: %v, want admission to refuse it (%q)", err, want)
	}
	// kube-controller-manager's Job controller created the step's pod; a cluster admin may not create
	// one that runs as the attempt's ServiceAccount.
	borrow := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "borrow"}, Spec: corev1.PodSpec{
		ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/tools:1",
			SecurityContext: &corev1.SecurityContext{ // passes the namespace's restricted Pod Security
				RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}}}}}
	if err := cluster.Client.Create(ctx, borrow); err == nil || !strings.Contains(err.Error(), "the pod runs as ServiceAccount "+sa) {
		t.Errorf("a cluster admin creating a pod as the attempt's ServiceAccount %q: %v, want admission to refuse it", sa, err)
	}
	// Nor get a token of it (kubectl create token).
	_, err = cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if want := "ServiceAccount " + sa + " is an attempt of workflow release"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a cluster admin requesting a token of the attempt's ServiceAccount: %v, want admission to refuse it (%q)", err, want)
	}
	// Nor one that mounts the Secret the step's grant hands out: the step's own pod, which mounts
	// its copy, was created by the Job controller.
	borrow.Spec.ServiceAccountName = "default"
	borrow.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "registry"}}}}
	if err := cluster.Client.Create(ctx, borrow); err == nil || !strings.Contains(err.Error(), "the pod uses Secret registry, which CredentialGrants hand out") {
		t.Errorf("a cluster admin creating a pod that mounts the grantable Secret: %v, want admission to refuse it", err)
	}
	// kube-controller-manager runs here as itself, as its Job controller does, but its ReplicaSet
	// controller creates no pod that claims to be a step's.
	labels := map[string]string{"app": "borrow", custodyv1alpha1.LabelWorkflow: "release"}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "borrow"}, Spec: appsv1.ReplicaSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: borrow.Spec.Containers}}}}
	if err := cluster.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the ReplicaSet's pod refused", func() error {
		var events corev1.EventList
		if err := cluster.Client.List(ctx, &events, client.InNamespace(ns),
			client.MatchingFields{"involvedObject.name": "borrow", "reason": "FailedCreate"}); err != nil {
			return err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, `admission webhook "steppodcreation.custody.dev" denied the request: the pod is labelled as a pod of workflow release`) {
				return nil
			}
		}
		return fmt.Errorf("%d FailedCreate Events, none from the step-pod guard", len(events.Items))
	})
	var rsPods corev1.PodList
	if err := cluster.Client.List(ctx, &rsPods, client.InNamespace(ns), client.MatchingLabels{"app": "borrow"}); err != nil || len(rsPods.Items) != 0 {
		t.Errorf("the ReplicaSet's pods: %d (%v), want none", len(rsPods.Items), err)
	}
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)
}

// TestPluginPrintsAdmissionWarnings: what admission warns of when `kubectl custody run` creates a
// run (here: a grant that does not exist, which would keep a step waiting) reaches the user as
// kubectl prints it, on standard error, and the run is created.
func TestPluginPrintsAdmissionWarnings(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	createFromYAML(ctx, t, ns, `
metadata: {name: pay}
spec:
  steps: [{name: pay, image: registry.example.com/pay:1, credentials: [ledger]}]
`, &custodyv1alpha1.WorkflowTemplate{})
	out, errOut, err := kubectlCustody(ns, "run", "pay", "--name", "pay-1")
	if err != nil || !strings.Contains(out, "workflow/pay-1 created") {
		t.Fatalf("run: %v\n%s%s", err, out, errOut)
	}
	if want := `Warning: step "pay" will wait until this changes: CredentialGrant ledger does not exist in namespace ` + ns; !strings.Contains(errOut, want) {
		t.Errorf("run printed on standard error:\n%s\nwant %q", errOut, want)
	}
	if _, errOut, err := kubectlCustody(ns, "cancel", "pay-1"); err != nil {
		t.Fatalf("cancel: %v %s", err, errOut)
	}
}

func step(wf *custodyv1alpha1.Workflow, name string) custodyv1alpha1.StepStatus {
	for _, st := range wf.Status.Steps {
		if st.Name == name {
			return st
		}
	}
	return custodyv1alpha1.StepStatus{}
}

// createPublishCredentials makes the Role, the grantable Secret and the two grants (publish-role
// and registry) that the steps of a workflow request: the diamond's publish step.
func createPublishCredentials(ctx context.Context, t *testing.T, ns, workflow string, steps ...string) {
	t.Helper()
	for _, obj := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "publisher", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: ns,
			Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}}, StringData: map[string]string{"password": "e2e-value"}},
	} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	subjects := fmt.Sprintf("[{workflowName: %s, steps: [%s]}]", workflow, strings.Join(steps, ", "))
	for _, manifest := range []string{`
metadata: {name: publish-role}
spec:
  subjects: ` + subjects + `
  credential: {kubernetesRole: {kind: Role, name: publisher}}`, `
metadata: {name: registry}
spec:
  subjects: ` + subjects + `
  credential: {secret: {name: registry, keys: [password]}}`} {
		createFromYAML(ctx, t, ns, manifest, &custodyv1alpha1.CredentialGrant{})
	}
}

// checkCredentialsRevoked checks that publish's credentials were recorded as revoked and nothing
// that carried them is left.
func checkCredentialsRevoked(ctx context.Context, t *testing.T, ns string, wf *custodyv1alpha1.Workflow) {
	t.Helper()
	if creds := step(wf, "publish").Credentials; len(creds) != 2 || creds[0].RevokedAt == nil || creds[1].RevokedAt == nil {
		t.Errorf("publish's credentials: %+v", creds)
	}
	eventually(t, 30*time.Second, "no RoleBinding or Secret copy left", func() error {
		var rbs rbacv1.RoleBindingList
		var copies corev1.SecretList
		if err := cluster.Client.List(ctx, &rbs, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := cluster.Client.List(ctx, &copies, client.InNamespace(ns), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
			return err
		}
		if len(rbs.Items)+len(copies.Items) != 0 {
			return fmt.Errorf("%d RoleBindings and %d copies left", len(rbs.Items), len(copies.Items))
		}
		return nil
	})
}

// TestDeletingANamespaceMidRun: deleting the namespace of a run under way (one step holding
// credentials and a registered SPIFFE identity, another waiting for an approval) is not held up
// by the run's revocation finalizer, and leaves no SPIRE entry of the run behind: the namespace
// controller deletes the Workflow, the manager revokes what the run held and releases it.
func TestDeletingANamespaceMidRun(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	// A chain of steps that each hold the credentials while they run (2 s each on KWOK), so that
	// one of them holds them when the namespace goes.
	chain := []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"}
	createPublishCredentials(ctx, t, ns, "doomed", chain...)
	manifest := `
metadata: {name: doomed}
spec:
  steps:
  - {name: gate, image: registry.example.com/w:1, approval: {approvers: {users: [nobody]}}}`
	after := ""
	for _, name := range chain {
		manifest += "\n  - {name: " + name + ", image: registry.example.com/w:1, credentials: [publish-role, registry]" + after + "}"
		after = ", dependsOn: [" + name + "]"
	}
	wf := createWorkflow(ctx, t, ns, manifest)
	var holder string
	eventually(t, 2*time.Minute, "a step holding its credentials and identity", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		for _, st := range wf.Status.Steps {
			if st.Phase == custodyv1alpha1.StepRunning && st.Identity != nil && st.Identity.State == custodyv1alpha1.IdentityRegistered &&
				len(st.Credentials) == 2 && st.Credentials[0].RevokedAt == nil && st.Credentials[1].RevokedAt == nil {
				holder = st.Name
				return nil
			}
		}
		return fmt.Errorf("no step holds its credentials and identity; phase %s", wf.Status.Phase)
	})
	if st := step(wf, "gate"); st.Phase != custodyv1alpha1.StepWaitingForApproval {
		t.Fatalf("step gate: %s (%s), want it waiting for its approval", st.Phase, st.Reason)
	}
	reg, err := spire.Dial(ctx, spire.Options{Address: spireServer.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close() }()
	if entries, err := reg.List(ctx, identity.DefaultEntryIDPrefix+string(wf.UID)); err != nil || len(entries) == 0 {
		t.Fatalf("SPIRE entries of the run while %s holds its identity: %d (%v), want at least one", holder, len(entries), err)
	}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := cluster.Client.Delete(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "namespace "+ns+" deleted", func() error {
		err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(nsObj), nsObj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var why []string
		for _, c := range nsObj.Status.Conditions {
			if c.Status == corev1.ConditionTrue {
				why = append(why, c.Message)
			}
		}
		return fmt.Errorf("still %s: %s", nsObj.Status.Phase, strings.Join(why, "; "))
	})
	entries, err := reg.List(ctx, identity.DefaultEntryIDPrefix+string(wf.UID))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%d SPIRE entries of the deleted run remain after its namespace is gone", len(entries))
	}
}

// TestPodCreationRefusalIsReported: in a namespace whose ResourceQuota wants every pod to set a
// CPU limit, kube-controller-manager's Job controller cannot create a step's pod (the step sets
// none). The step says so, in the Job controller's words, instead of looking like it runs; once
// the quota is gone the Job controller creates the pod and the workflow succeeds.
func TestPodCreationRefusalIsReported(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceLimitsCPU: resource.MustParse("4")}}}
	if err := cluster.Client.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the quota controller to count the namespace", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(quota), quota); err != nil {
			return err
		}
		if quota.Status.Hard == nil {
			return fmt.Errorf("quota status not set yet")
		}
		return nil
	})
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "no-limits", Namespace: ns},
		Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{{Name: "a", Image: "registry.example.com/w:1"}}}}
	if err := cluster.Client.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	waitStuck(ctx, t, wf, "a", custodyv1alpha1.StepReasonPodNotCreated, "must specify limits.cpu")
	if err := cluster.Client.Delete(ctx, quota); err != nil {
		t.Fatal(err)
	}
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 3*time.Minute)
}

// TestStepsRunOnTheirNodePool: a step with a nodeSelector and a toleration runs on the tainted,
// labelled node pool it asks for; a step without runs where it always did, never on that pool.
func TestStepsRunOnTheirNodePool(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pool := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "kwok-gpu-0", Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{"type": "kwok", "custody.dev/e2e-pool": "gpu", corev1.LabelHostname: "kwok-gpu-0"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "custody.dev/e2e-dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}},
	}
	if err := cluster.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), pool) })
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: placement}
spec:
  steps:
  - name: train
    image: registry.example.com/ml/train:1
    nodeSelector: {custody.dev/e2e-pool: gpu}
    tolerations: [{key: custody.dev/e2e-dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  - {name: report, image: registry.example.com/ml/report:1}
`)
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)
	if node := step(wf, "train").NodeName; node != pool.Name {
		t.Errorf("train ran on %q, want the pool's node %s", node, pool.Name)
	}
	if node := step(wf, "report").NodeName; node == pool.Name || node == "" {
		t.Errorf("report ran on %q, want one of %v", node, cluster.Nodes)
	}
}

// TestStepsRunWithTheirPriorityClass: the PriorityClass a run's stepDefaults name reaches every
// step's pod that names none itself, and a step's own class wins (the API server's Priority
// admission resolves each to its value).
func TestStepsRunWithTheirPriorityClass(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	for name, value := range map[string]int32{"custody-e2e-batch": -10, "custody-e2e-urgent": 1000} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
		if err := cluster.Client.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), pc) })
	}
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: priorities}
spec:
  stepDefaults: {priorityClassName: custody-e2e-batch}
  steps:
  - {name: a, image: registry.example.com/w:1}
  - {name: b, image: registry.example.com/w:1, priorityClassName: custody-e2e-urgent}
`)
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)
	for name, want := range map[string]int32{"a": -10, "b": 1000} {
		pod := &corev1.Pod{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: step(wf, name).PodName}, pod); err != nil {
			t.Fatal(err)
		}
		if pod.Spec.Priority == nil || *pod.Spec.Priority != want {
			t.Errorf("step %s's pod has priority class %q, want the class of priority %d", name, pod.Spec.PriorityClassName, want)
		}
	}
}

// TestUnschedulableStepSaysWhy: a step whose nodeSelector no node matches stays Running without a
// node; the step says so in kube-scheduler's words, and cancelling the run ends it.
func TestUnschedulableStepSaysWhy(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: ns},
		Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{{Name: "a", Image: "registry.example.com/w:1",
			NodeSelector: map[string]string{"custody.dev/e2e-pool": "none"}}}}}
	if err := cluster.Client.Create(ctx, wf); err != nil {
		t.Fatal(err)
	}
	waitStuck(ctx, t, wf, "a", custodyv1alpha1.StepReasonUnschedulable, "didn't match Pod's node affinity/selector")
	if err := cluster.Client.Patch(ctx, wf, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":true}}`))); err != nil {
		t.Fatal(err)
	}
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowCancelled, time.Minute)
}

// TestDeletedPodFailsItsStep: deleting a step's pod by hand fails the step as PodDeleted, naming
// the pod, on the real Job controller (backoffLimit 0: it makes no pod in its place), and
// retries.when can retry exactly that. The pod is held unschedulable so that it is the one
// status recorded when it is deleted.
func TestDeletedPodFailsItsStep(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: pod-deleted}
spec:
  steps:
  - name: a
    image: registry.example.com/w:1
    nodeSelector: {custody.dev/e2e-pool: none}
    retries: {limit: 1, backoff: {duration: 1s}, when: "reason == 'PodDeleted'"}
`)
	deleteStuckPod := func(attempt int32) string {
		t.Helper()
		waitStuck(ctx, t, wf, "a", custodyv1alpha1.StepReasonUnschedulable, "didn't match Pod's node affinity/selector")
		st := step(wf, "a")
		if st.Attempt != attempt || st.PodName == "" {
			t.Fatalf("step a: attempt %d, pod %q; want attempt %d with its pod", st.Attempt, st.PodName, attempt)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: st.PodName, Namespace: ns}}
		if err := cluster.Client.Delete(ctx, pod); err != nil {
			t.Fatal(err)
		}
		return st.PodName
	}
	deleteStuckPod(1)
	eventually(t, time.Minute, "attempt 2 after the first pod was deleted", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		if st := step(wf, "a"); st.Attempt != 2 || st.LastFailureReason != custodyv1alpha1.StepReasonPodDeleted {
			return fmt.Errorf("step a: attempt %d, last failure %q", st.Attempt, st.LastFailureReason)
		}
		return nil
	})
	second := deleteStuckPod(2)
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowFailed, time.Minute)
	if st := step(wf, "a"); st.Reason != custodyv1alpha1.ReasonRetriesExhausted ||
		st.Message != "Attempt 2 of 2 failed (PodDeleted): its pod "+second+" was deleted before the step container ended" {
		t.Errorf("step a: %s (%s): %q, want it failed because its pod %s was deleted", st.Phase, st.Reason, st.Message, second)
	}
}

// TestRevokedGrantStopsTheStep: suspending a grant whose onRevoke is StopStep stops the step that
// holds it on a real cluster: its Job is deleted and the garbage collector takes the pod with it,
// the Secret copy goes, and the step fails with reason CredentialRevoked. The step's pod waits for
// a node pool that does not exist, so that it is still there when the grant is suspended.
func TestRevokedGrantStopsTheStep(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "erp-api", Namespace: ns,
		Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}}, StringData: map[string]string{"token": "e2e-value"}}
	if err := cluster.Client.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	createFromYAML(ctx, t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  onRevoke: StopStep`, &custodyv1alpha1.CredentialGrant{})
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: registry.example.com/w:1, credentials: [erp], nodeSelector: {custody.dev/e2e-pool: none}}
`)
	waitStuck(ctx, t, wf, "post", custodyv1alpha1.StepReasonUnschedulable, "didn't match Pod's node affinity/selector")
	st := step(wf, "post")
	if len(st.Credentials) != 1 || st.Credentials[0].OnRevoke != custodyv1alpha1.RevokeStopStep {
		t.Fatalf("step post's credentials: %+v", st.Credentials)
	}
	_, copyName, _ := strings.Cut(st.Credentials[0].Resource, "/")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: st.PodName, Namespace: ns}}

	setSuspended(ctx, t, ns, "erp", true)
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowFailed, time.Minute)
	if st := step(wf, "post"); st.Reason != custodyv1alpha1.ReasonCredentialRevoked ||
		!strings.Contains(st.Message, "its Secret credential of grant erp was revoked (GrantWithdrawn: the grant was suspended) and the grant's onRevoke is StopStep") {
		t.Errorf("step post: %s (%s): %q", st.Phase, st.Reason, st.Message)
	}
	for _, o := range []client.Object{pod, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: st.JobName, Namespace: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: copyName, Namespace: ns}}} {
		eventually(t, time.Minute, o.GetName()+" gone", func() error {
			err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(o), o)
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%w)", err)
		})
	}
}

// waitStuck waits until a step of wf runs with the reason that says why it cannot get going, and a
// message that says so in the cluster's words.
func waitStuck(ctx context.Context, t *testing.T, wf *custodyv1alpha1.Workflow, name, reason, words string) {
	t.Helper()
	eventually(t, 2*time.Minute, "step "+name+" to say why it cannot get going", func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		st := step(wf, name)
		if st.Phase != custodyv1alpha1.StepRunning || st.Reason != reason || !strings.Contains(st.Message, words) {
			return fmt.Errorf("step %s %s %s: %s", name, st.Phase, st.Reason, st.Message)
		}
		return nil
	})
}

// waitPhase waits until wf reaches phase, saying where each step is while it has not.
func waitPhase(ctx context.Context, t *testing.T, wf *custodyv1alpha1.Workflow, phase custodyv1alpha1.WorkflowPhase,
	timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "workflow "+string(phase), func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		if wf.Status.Phase != phase {
			var b strings.Builder
			for _, st := range wf.Status.Steps {
				fmt.Fprintf(&b, "%s=%s(%s: %s) ", st.Name, st.Phase, st.Reason, st.Message)
			}
			return fmt.Errorf("phase %q: %s", wf.Status.Phase, b.String())
		}
		return nil
	})
}

// createWorkflow creates the Workflow of a YAML manifest in ns.
func createWorkflow(ctx context.Context, t *testing.T, ns, manifest string) *custodyv1alpha1.Workflow {
	t.Helper()
	wf := &custodyv1alpha1.Workflow{}
	createFromYAML(ctx, t, ns, manifest, wf)
	return wf
}

// createFromYAML decodes a YAML manifest (strictly) into o and creates it in ns.
func createFromYAML(ctx context.Context, t *testing.T, ns, manifest string, o client.Object) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(manifest), o); err != nil {
		t.Fatal(err)
	}
	o.SetNamespace(ns)
	if err := cluster.Client.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
}
