package webhook_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/webhook"
)

// TestStepPodsAreProtected: in a namespace labelled custody.dev/protect-step-pods=true nobody may
// exec into, attach to, port-forward or proxy to, or add an ephemeral container to a step's pod,
// which holds the step's identity and credentials; the refusal says why and what to do instead. A
// step pod whose labels were removed is still known by its ServiceAccount (which a pod cannot
// change) from the Workflow's status. Other pods, and step pods of namespaces that did not opt in,
// are left to RBAC (here the API server then fails for want of a node: no kubelet runs here).
func TestStepPodsAreProtected(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	protect(t, ns)
	pod := func(ns, name, sa string, labels map[string]string) *corev1.Pod {
		t.Helper()
		create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "step", Image: "busybox"}}}}
		create(t, jobController(), ofJob(p)) // only the Job controller may create a step's pod here
		return p
	}
	stepLabels := map[string]string{custodyv1alpha1.LabelWorkflow: "release", custodyv1alpha1.LabelStep: "deploy",
		custodyv1alpha1.LabelAttempt: "1"}
	step := pod(ns, "release-deploy-1-x7k2p", "release-deploy-1-3f9a1c", stepLabels)
	other := pod(ns, "debug-shell", "debug", nil)

	connect := func(user string, p *corev1.Pod, sub string) error {
		cfg := rest.CopyConfig(env.Config)
		if user != "" {
			cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs.CoreV1().RESTClient().Post().Namespace(p.Namespace).Resource("pods").Name(p.Name).SubResource(sub).
			Param("container", "step").Param("command", "sh").Param("stdout", "true").Do(ctx).Error()
	}
	addDebugContainer := func(p *corev1.Pod) error {
		cur := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return err
		}
		cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"}})
		return env.Client.SubResource("ephemeralcontainers").Update(ctx, cur)
	}
	refusedBefore := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppod"))
	why := "pod release-deploy-1-x7k2p runs step deploy (attempt 1) of workflow release and holds its SPIFFE identity and " +
		"credentials; namespace " + ns + " protects step pods (label custody.dev/protect-step-pods=true), so nobody may "
	// mallory has the namespace's edit rights, which include exec, attach and port-forward.
	refused(t, "exec into a step's pod", connect(mallory, step, "exec"), why+"exec into it", "kubectl custody logs")
	refused(t, "attach to a step's pod", connect(mallory, step, "attach"), why+"attach to it")
	refused(t, "port-forward to a step's pod", connect(mallory, step, "portforward"), why+"port-forward to it")
	refused(t, "the API server's proxy to a step's pod", connect(mallory, step, "proxy"), why+"proxy requests to it")
	refused(t, "an ephemeral container in a step's pod, even from a cluster admin", addDebugContainer(step),
		why+"add an ephemeral container to it")
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppod")) - refusedBefore; got != 5 {
		t.Errorf("custody_admission_refusals_total{kind=Pod,check=steppod} rose by %v, want 5", got)
	}

	// As a person sees it (kubectl tries WebSocket, then SPDY: two refusals).
	out, err := env.Kubectl(t, "-n", ns, "--as", mallory, "--as-group", "system:authenticated", "exec", step.Name, "--", "sh")
	if err == nil || !strings.Contains(out, `admission webhook "steppods.custody.dev" denied the request: `+why+"exec into it") {
		t.Errorf("kubectl exec: %v\n%s", err, out)
	}
	// Not a step's pod: left to RBAC and the API server.
	notOurs := func(what string, err error) {
		t.Helper()
		if err == nil || strings.Contains(err.Error(), "protects step pods") {
			t.Errorf("%s: %v, want it past admission (and failing for want of a node)", what, err)
		}
	}
	notOurs("exec into another pod of the protected namespace", connect(mallory, other, "exec"))
	if err := addDebugContainer(other); err != nil {
		t.Errorf("an ephemeral container in another pod of the protected namespace: %v", err)
	}

	// A step pod whose labels someone removed: its ServiceAccount, named in the Workflow's status.
	relabelled := pod(ns, "invoice-pay-2-a1b2c", "invoice-4711-pay-2-9c1d0e", nil)
	runningAttempt(t, ns, "invoice-4711-pay-2-9c1d0e")
	eventually(t, "the step pod without labels refused", func() error {
		err := connect(mallory, relabelled, "exec")
		if err == nil {
			return errors.New("exec into it was let through")
		}
		if !strings.Contains(err.Error(), "pod invoice-pay-2-a1b2c runs step pay (attempt 2) of workflow invoice-4711") {
			return fmt.Errorf("exec into it: %w", err)
		}
		return nil
	})

	// A namespace that did not opt in: the webhook is not even called.
	plain := env.Namespace(t)
	unprotected := pod(plain, "release-deploy-1-x7k2p", "release-deploy-1-3f9a1c", stepLabels)
	notOurs("exec into a step's pod of a namespace without the label", connect("", unprotected, "exec"))
}

// jobController is a client that acts as kube-controller-manager's Job controller does (with
// --use-service-account-credentials, the kubeadm default).
func jobController() client.Client {
	return env.As("system:serviceaccount:kube-system:job-controller", "system:masters")
}

// ofJob makes a pod the step's Job's (release-deploy-1), as the Job controller does (its
// controller owner reference).
func ofJob(p *corev1.Pod) *corev1.Pod {
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "release-deploy-1", UID: "release-deploy-1-uid",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	return p
}

// protect labels a namespace so that it protects step pods.
func protect(t *testing.T, ns string) {
	t.Helper()
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: ns}, namespace); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(namespace.DeepCopy())
	namespace.Labels[webhook.LabelProtectStepPods] = "true"
	if err := env.Client.Patch(ctxT(t), namespace, patch); err != nil {
		t.Fatal(err)
	}
}

// TestOnlyTheJobControllerCreatesStepPods: in a namespace that protects step pods, a pod that
// claims to be a step's (by its labels, or by running as an attempt's ServiceAccount, labelled as
// such or named in a Workflow's status) is refused to everyone but the Job controller, cluster
// admins included, and a Job whose pods would be to everyone but Custody's controller; other
// pods and Jobs, and namespaces without the label, are left alone.
func TestOnlyTheJobControllerCreatesStepPods(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	protect(t, ns)
	sa := func(ns, name string, labels map[string]string) {
		t.Helper()
		create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}})
	}
	pod := func(ns, name, sa string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "step", Image: "busybox"}}}}
	}
	stepLabels := map[string]string{custodyv1alpha1.LabelWorkflow: "release", custodyv1alpha1.LabelStep: "deploy",
		custodyv1alpha1.LabelAttempt: "1"}
	sa(ns, "release-deploy-1-3f9a1c", stepLabels)
	sa(ns, "invoice-4711-pay-2-9c1d0e", nil) // an attempt's, whose labels someone removed
	sa(ns, "tools", nil)
	runningAttempt(t, ns, "invoice-4711-pay-2-9c1d0e")

	before := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppodcreation"))
	const only = "only its Job's controller may create a step's pod, which receives the step's SPIFFE identity and credentials"
	refused(t, "a pod labelled as a step's", as(mallory).Create(ctx, pod(ns, "fake-step", "tools", stepLabels)),
		`admission webhook "steppodcreation.custody.dev" denied the request: the pod is labelled as a pod of workflow release`, only)
	refused(t, "a pod that runs as an attempt's ServiceAccount, by a cluster admin", env.Client.Create(ctx, pod(ns, "borrow", "release-deploy-1-3f9a1c", nil)),
		"the pod runs as ServiceAccount release-deploy-1-3f9a1c of an attempt of workflow release", only)
	eventually(t, "a pod that runs as an attempt's unlabelled ServiceAccount refused", func() error {
		err := as(mallory).Create(ctx, pod(ns, "borrow-2", "invoice-4711-pay-2-9c1d0e", nil))
		if err == nil {
			return errors.New("created")
		}
		if !strings.Contains(err.Error(), "the pod runs as ServiceAccount invoice-4711-pay-2-9c1d0e of step pay (attempt 2) of workflow invoice-4711") {
			return err
		}
		return nil
	})
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppodcreation")) - before; got < 3 {
		t.Errorf("custody_admission_refusals_total{kind=Pod,check=steppodcreation} rose by %v, want at least 3", got)
	}

	// The Job controller creates step pods; anyone creates other pods.
	create(t, jobController(), ofJob(pod(ns, "release-deploy-1-x7k2p", "release-deploy-1-3f9a1c", stepLabels)))
	create(t, as(mallory), pod(ns, "tools-shell", "tools", nil))
	// kube-controller-manager running as itself (without --use-service-account-credentials)
	// creates a Job's pods, but its ReplicaSet controller, the same user, creates no pod as an
	// attempt's ServiceAccount; nor does the Job controller's user create a pod no Job owns.
	kcm := env.As("system:kube-controller-manager", "system:masters")
	create(t, kcm, ofJob(pod(ns, "release-deploy-1-q8w4z", "release-deploy-1-3f9a1c", stepLabels)))
	rs := pod(ns, "borrow-rs-5d9f7", "release-deploy-1-3f9a1c", nil)
	rs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "borrow-rs", UID: "borrow-rs-uid",
		Controller: ptr.To(true)}}
	refused(t, "a ReplicaSet's pod as an attempt's ServiceAccount, by kube-controller-manager", kcm.Create(ctx, rs),
		"the pod runs as ServiceAccount release-deploy-1-3f9a1c of an attempt of workflow release", only)
	refused(t, "a pod no Job owns, by the Job controller's user", jobController().Create(ctx, pod(ns, "orphan", "release-deploy-1-3f9a1c", nil)),
		"the pod runs as ServiceAccount release-deploy-1-3f9a1c", only)

	// Nor may anyone but Custody's controller create a Job whose pods the Job controller would
	// create as step pods.
	job := func(name, sa string, labels map[string]string) *batchv1.Job {
		p := pod(ns, "", sa, labels)
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}}}
	}
	const onlyJobs = "only Custody's controller may create a step's Job"
	refused(t, "a Job as an attempt's ServiceAccount", as(mallory).Create(ctx, job("borrow", "release-deploy-1-3f9a1c", nil)),
		`admission webhook "stepjobcreation.custody.dev" denied the request: Job borrow would create step pods `+
			`(runs as ServiceAccount release-deploy-1-3f9a1c of an attempt of workflow release)`, onlyJobs)
	refused(t, "a Job whose pods are labelled as a step's", as(mallory).Create(ctx, job("fake-step", "tools", stepLabels)),
		"Job fake-step would create step pods (is labelled as a pod of workflow release", onlyJobs)
	refused(t, "a Job as a ServiceAccount that does not exist yet", as(mallory).Create(ctx, job("early", "release-deploy-2-77aa01", nil)),
		"Job early would create step pods (runs as ServiceAccount release-deploy-2-77aa01, which does not exist yet and could "+
			"be a step attempt's to come", onlyJobs)
	create(t, as(mallory), job("report", "tools", nil))
	// The manager of this suite is Custody's controller, acting as the test's admin.
	create(t, env.Client, job("release-deploy-1", "release-deploy-1-3f9a1c", stepLabels))
	// A namespace that did not opt in: the webhook is not even called.
	plain := env.Namespace(t)
	sa(plain, "release-deploy-1-3f9a1c", stepLabels)
	create(t, env.Client, pod(plain, "release-deploy-1-x7k2p", "release-deploy-1-3f9a1c", stepLabels))
}

// runningAttempt creates the payment Workflow with its step pay running as attempt 2 under the
// ServiceAccount sa, as the controller records it in status.
func runningAttempt(t *testing.T, ns, sa string) {
	t.Helper()
	wf := mustWorkflow(t, ns, paymentWorkflow)
	create(t, as(alice), wf)
	wf.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "pay", Phase: custodyv1alpha1.StepRunning, Attempt: 2,
		ServiceAccountName: sa}}
	if err := env.Client.Status().Update(ctxT(t), wf); err != nil {
		t.Fatal(err)
	}
}

// TestGrantedSecretsStayWithSteps: in a namespace that protects step pods, a credential that
// grants hand out reaches a container only through a step: nobody but the Job controller may
// create a pod that uses a grantable Secret, an attempt's copy of one, or a Secret not made yet
// under a copy's name, in any of the ways a container gets a Secret's values; nor may anyone but
// Custody's controller create a Job whose pods would.
func TestGrantedSecretsStayWithSteps(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	protect(t, ns)
	secret := func(ns, name string, labels map[string]string) {
		t.Helper()
		create(t, env.Client, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			StringData: map[string]string{"password": "webhook-suite-value"}})
	}
	secret(ns, "registry", map[string]string{custodyv1alpha1.LabelGrantable: "true"})
	const copyOf = "release-deploy-1-3f9a1c-g1a2b3c"
	secret(ns, copyOf, map[string]string{"custody.dev/copy-of": "registry", custodyv1alpha1.LabelWorkflow: "release"})
	secret(ns, "app-config", nil)
	create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tools"}})

	pod := func(ns, name string, mod func(*corev1.PodSpec)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{ServiceAccountName: "tools", RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		mod(&p.Spec)
		return p
	}
	volume := func(name string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}}}
		}
	}
	projected := func(name string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}}}}}
		}
	}
	envVar := func(name string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "password"}}}}
		}
	}
	initEnvFrom := func(name string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", EnvFrom: []corev1.EnvFromSource{{
				SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}}}
		}
	}

	before := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppodcreation"))
	const grantable = "the pod uses Secret registry, which CredentialGrants hand out to steps (custody.dev/grantable=true)"
	const only = "only its Job's controller may create a step's pod"
	refused(t, "a cluster admin's pod that mounts a grantable Secret", env.Client.Create(ctx, pod(ns, "mount", volume("registry"))),
		`admission webhook "steppodcreation.custody.dev" denied the request: `+grantable, only, "without Custody's labels or granted Secrets")
	refused(t, "a pod that projects a grantable Secret", as(mallory).Create(ctx, pod(ns, "project", projected("registry"))), grantable)
	refused(t, "a pod whose init container reads a grantable Secret into its environment",
		as(mallory).Create(ctx, pod(ns, "init", initEnvFrom("registry"))), grantable)
	refused(t, "a pod that reads an attempt's copy into its environment", as(mallory).Create(ctx, pod(ns, "copy", envVar(copyOf))),
		"the pod uses Secret "+copyOf+", a step attempt's copy of granted Secret registry (workflow release)", only)
	refused(t, "a pod that mounts a copy to come", as(mallory).Create(ctx, pod(ns, "early", volume("release-deploy-2-77aa01-g1a2b3c"))),
		"the pod uses Secret release-deploy-2-77aa01-g1a2b3c, which does not exist yet and is named like a step attempt's copy of a granted Secret")
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Pod", "steppodcreation")) - before; got != 5 {
		t.Errorf("custody_admission_refusals_total{kind=Pod,check=steppodcreation} rose by %v, want 5", got)
	}
	// Other Secrets, there or not yet, are left to RBAC; the Job controller creates the step's pod.
	create(t, as(mallory), pod(ns, "config", volume("app-config")))
	create(t, as(mallory), pod(ns, "later", envVar("tls-to-come")))
	create(t, jobController(), ofJob(pod(ns, "release-deploy-1-x7k2p", volume(copyOf))))

	job := func(name string, mod func(*corev1.PodSpec)) *batchv1.Job {
		p := pod(ns, "", mod)
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: p.Spec}}}
	}
	refused(t, "a Job whose pods would mount a grantable Secret", as(mallory).Create(ctx, job("mount", volume("registry"))),
		`admission webhook "stepjobcreation.custody.dev" denied the request: Job mount would create step pods (uses Secret registry, `+
			"which CredentialGrants hand out to steps", "only Custody's controller may create a step's Job")
	create(t, as(mallory), job("report", volume("app-config")))
	create(t, env.Client, job("release-deploy-1", volume(copyOf))) // Custody's controller
	// Nor may anyone but Custody's controller make a Secret or RoleBinding under the name of an
	// attempt's copy or binding (Custody would take it for its own), a cluster admin included.
	squat := "release-deploy-2-77aa01-g1a2b3c"
	refused(t, "a Secret named like an attempt's copy", as(mallory).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: squat}}),
		`admission webhook "stepnames.custody.dev" denied the request: Secret `+squat+` is named like a step attempt's copy of a granted Secret`,
		"only Custody's controller makes those")
	refused(t, "a RoleBinding named like an attempt's binding, by a cluster admin", env.As("ops-admin", "system:masters").Create(ctx,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: squat},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}}), "RoleBinding "+squat+" is named like")
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("RoleBinding", "stepname")); got < 1 {
		t.Errorf("custody_admission_refusals_total{kind=RoleBinding,check=stepname} = %v, want at least 1", got)
	}
	// A namespace that did not opt in: the webhook is not even called.
	plain := env.Namespace(t)
	create(t, env.As("ops-admin", "system:masters"), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: plain, Name: squat}})
	secret(plain, "registry", map[string]string{custodyv1alpha1.LabelGrantable: "true"})
	create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: plain, Name: "tools"}})
	create(t, env.Client, pod(plain, "mount", volume("registry")))
}

// TestOnlyKubeletsGetStepTokens: in a namespace that protects step pods nobody, a namespace editor
// with `kubectl create token` or a cluster admin, gets a token of an attempt's ServiceAccount (nor
// makes a token Secret of it),
// which would act with what the step's grants bind it to without its pod; a kubelet gets one for
// the step's pod; other ServiceAccounts, and namespaces that did not opt in, are left to RBAC.
func TestOnlyKubeletsGetStepTokens(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	protect(t, ns)
	stepLabels := map[string]string{custodyv1alpha1.LabelWorkflow: "release", custodyv1alpha1.LabelStep: "deploy",
		custodyv1alpha1.LabelAttempt: "1"}
	for name, labels := range map[string]map[string]string{"release-deploy-1-3f9a1c": stepLabels, "invoice-4711-pay-2-9c1d0e": nil, "tools": nil} {
		create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}})
	}
	runningAttempt(t, ns, "invoice-4711-pay-2-9c1d0e")
	cs := func(c *rest.Config) kubernetes.Interface {
		t.Helper()
		k, err := kubernetes.NewForConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	token := func(k kubernetes.Interface, ns, sa string, bound *authenticationv1.BoundObjectReference) error {
		_, err := k.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: bound}}, metav1.CreateOptions{})
		return err
	}
	admin := cs(env.Config)

	before := testutil.ToFloat64(webhook.Refusals.WithLabelValues("ServiceAccount", "steptoken"))
	out, err := env.Kubectl(t, "-n", ns, "--as", mallory, "--as-group", "system:authenticated", "create", "token", "release-deploy-1-3f9a1c")
	if err == nil || !strings.Contains(out, `admission webhook "steptokens.custody.dev" denied the request: ServiceAccount release-deploy-1-3f9a1c `+
		`is an attempt of workflow release: a token of it would act with what the step is granted, without its pod. Only the kubelet `+
		`may request one, for the step's pod; namespace `+ns+` protects step pods`) {
		t.Errorf("kubectl create token as a namespace editor: %v\n%s", err, out)
	}
	refused(t, "a cluster admin's token of an attempt's unlabelled ServiceAccount", token(admin, ns, "invoice-4711-pay-2-9c1d0e", nil),
		"ServiceAccount invoice-4711-pay-2-9c1d0e is step pay (attempt 2) of workflow invoice-4711")

	// The step's pod, from the Job controller; a token bound to it for its kubelet, not for anyone else.
	p := ofJob(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-deploy-1-x7k2p", Labels: stepLabels},
		Spec: corev1.PodSpec{ServiceAccountName: "release-deploy-1-3f9a1c", NodeName: "node-1",
			Containers: []corev1.Container{{Name: "step", Image: "busybox"}}}})
	create(t, jobController(), p)
	bound := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}
	refused(t, "a cluster admin's token bound to the step's pod", token(admin, ns, "release-deploy-1-3f9a1c", bound),
		"Only the kubelet may request one")
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("ServiceAccount", "steptoken")) - before; got != 3 {
		t.Errorf("custody_admission_refusals_total{kind=ServiceAccount,check=steptoken} rose by %v, want 3", got)
	}
	// A ServiceAccount someone made under the name of an attempt to come (names can be foretold once
	// the run exists; Custody would take it for its own) is that attempt's already.
	run := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "invoice-4711"}, run); err != nil {
		t.Fatal(err)
	}
	early := jobspec.Name(run.Name, string(run.UID), "pay", 3)
	create(t, as(mallory), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: early}})
	refused(t, "a token of a ServiceAccount made under the name of an attempt to come", token(admin, ns, early, nil),
		"ServiceAccount "+early+" is step pay (attempt 3, to come) of workflow invoice-4711")
	refused(t, "a pod as that ServiceAccount", as(mallory).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "early"},
		Spec: corev1.PodSpec{ServiceAccountName: early, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}),
		"the pod runs as ServiceAccount "+early+" of step pay (attempt 3, to come) of workflow invoice-4711")

	// Nor a Secret that kube-controller-manager would fill with a token of it, one that never expires.
	tokenSecret := func(ns, name, sa string, typ corev1.SecretType) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: sa}}, Type: typ}
	}
	refused(t, "a cluster admin's token Secret of an attempt's ServiceAccount",
		env.Client.Create(ctx, tokenSecret(ns, "forever", "release-deploy-1-3f9a1c", corev1.SecretTypeServiceAccountToken)),
		`admission webhook "steptokensecrets.custody.dev" denied the request: Secret forever would hold a token of ServiceAccount `+
			`release-deploy-1-3f9a1c, which is an attempt of workflow release: a token that never expires`)
	if got := testutil.ToFloat64(webhook.Refusals.WithLabelValues("Secret", "steptokensecret")); got < 1 {
		t.Errorf("custody_admission_refusals_total{kind=Secret,check=steptokensecret} = %v, want at least 1", got)
	}
	create(t, env.Client, tokenSecret(ns, "tools-token", "tools", corev1.SecretTypeServiceAccountToken))
	create(t, env.Client, tokenSecret(ns, "not-a-token", "release-deploy-1-3f9a1c", corev1.SecretTypeOpaque))
	kubelet := rest.CopyConfig(env.Config)
	kubelet.Impersonate = rest.ImpersonationConfig{UserName: "system:node:node-1", Groups: []string{"system:nodes", "system:masters"}}
	if err := token(cs(kubelet), ns, "release-deploy-1-3f9a1c", bound); err != nil {
		t.Errorf("the kubelet's token for the step's pod: %v", err)
	}
	// Other ServiceAccounts, and namespaces that did not opt in.
	if out, err := env.Kubectl(t, "-n", ns, "--as", mallory, "--as-group", "system:authenticated", "create", "token", "tools"); err != nil {
		t.Errorf("kubectl create token tools as a namespace editor: %v\n%s", err, out)
	}
	plain := env.Namespace(t)
	create(t, env.Client, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: plain, Name: "release-deploy-1-3f9a1c", Labels: stepLabels}})
	if err := token(admin, plain, "release-deploy-1-3f9a1c", nil); err != nil {
		t.Errorf("a token in a namespace that does not protect step pods: %v", err)
	}
}
