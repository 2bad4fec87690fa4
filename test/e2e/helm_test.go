package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/spiretest"
	"github.com/custody-dev/custody/internal/testenv"
)

// TestHelmInstallIsSufficient installs charts/custody with the real helm CLI into a local cluster
// of its own (CRDs included), mints a token for the chart's ServiceAccount, runs the manager process
// with only that token and exactly the chart's arguments, and runs a workflow with every credential
// kind to success: the chart's RBAC is enough for everything the manager does, admission included.
//
// The manager cannot run as the chart's pod (KWOK nodes run no containers), so it runs as a process
// with the pod's identity, and the chart's webhook configurations are pointed at it, as their
// Service would point them at the pod.
func TestHelmInstallIsSufficient(t *testing.T) {
	ctx := context.Background()
	audit := filepath.Join(t.TempDir(), "audit.log")
	c := startCluster(t, localcluster.Options{Nodes: 1, PodRunTime: 3 * time.Second, WithoutCRDs: true, AuditLog: audit,
		RaceDetector: true})
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	helmBin, err := testenv.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	const release, ns, prefix = "custody", "custody-system", "custody-helm."
	cmd := exec.Command(helmBin, "install", release, filepath.Join(root, "charts", "custody"), //nolint:gosec // pinned helm
		"--kubeconfig", c.Kubeconfig, "--namespace", ns, "--create-namespace",
		"--set", "spire.trustDomain="+spiretest.TrustDomain, "--set", "spire.clusterName=local",
		"--set", "spire.serverAddress="+spireServer.Address, "--set", "spire.serverSocketHostPath="+filepath.Dir(spireServer.Socket),
		// Its own entry prefix: the other cluster's manager shares this SPIRE server.
		"--set", "spire.entryIDPrefix="+prefix)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	pointWebhooks(ctx, t, c)

	kubeconfig := serviceAccountKubeconfig(ctx, t, c, ns, release)

	// Exactly the chart's arguments, but for what only a pod has (its serving certificate mounted
	// from the Secret, ports of its own, its namespace for leader election).
	dep := &appsv1.Deployment{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, dep); err != nil {
		t.Fatal(err)
	}
	args := make([]string, 0, len(dep.Spec.Template.Spec.Containers[0].Args)+4)
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--webhook-port", "--webhook-cert-management", "--metrics-bind-address", "--health-probe-bind-address":
			continue
		}
		args = append(args, a)
	}
	metricsAddr, err1 := localcluster.FreeAddr()
	probeAddr, err2 := localcluster.FreeAddr()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	args = append(args, "--kubeconfig="+kubeconfig, "--leader-election-namespace="+ns,
		"--metrics-bind-address="+metricsAddr, "--health-probe-bind-address="+probeAddr)
	pid, err := c.StartManager(args...)
	if err != nil {
		t.Fatal(err)
	}
	admission, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitForAdmission(admission); err != nil {
		log, _ := os.ReadFile(c.ManagerLog(pid)) //nolint:gosec // the cluster's own log
		t.Fatalf("%v\nmanager log:\n%s", err, tail(log, 40))
	}

	wns := createEveryKindWorkflow(ctx, t, c)
	// A CronWorkflow of a template fires at the next minute while the rest runs.
	cron := createNightly(ctx, t, c, wns)
	wf := &custodyv1alpha1.Workflow{}
	eventually(t, 2*time.Minute, "the workflow succeeds under the chart's RBAC", func() error {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: wns, Name: "pay"}, wf); err != nil {
			return err
		}
		if wf.Status.Phase != custodyv1alpha1.WorkflowSucceeded || len(wf.Finalizers) > 0 {
			return fmt.Errorf("phase %q %s, finalizers %v", wf.Status.Phase, wf.Status.Progress, wf.Finalizers)
		}
		return nil
	})
	post := step(wf, "post")
	kinds := map[custodyv1alpha1.CredentialKind]bool{}
	for _, cr := range post.Credentials {
		if cr.RevokedAt == nil {
			t.Errorf("credential %s not revoked", cr.Grant)
		}
		kinds[cr.Kind] = true
	}
	if len(kinds) != 3 {
		t.Errorf("post held %+v, want a Kubernetes role, a Secret copy and SVID properties", post.Credentials)
	}
	if post.Identity == nil || post.Identity.State != custodyv1alpha1.IdentityRevoked {
		t.Errorf("post identity %+v", post.Identity)
	}
	// A finished workflow with ttlAfterFinished is deleted by the manager.
	ttl := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: short-lived}
spec:
  ttlAfterFinished: 1s
  steps: [{name: a, image: example.com/a:1}]`), ttl); err != nil {
		t.Fatal(err)
	}
	ttl.Namespace = wns
	if err := c.Client.Create(ctx, ttl); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the finished workflow deleted after its ttl", func() error {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(ttl), ttl)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w): %s", err, ttl.Status.Phase)
	})
	// A workflow that times out: its running Job is deleted.
	slow := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: too-slow}
spec:
  timeout: 2s
  steps:
  - {name: a, image: example.com/a:1}
  - {name: b, image: example.com/b:1, dependsOn: [a]}`), slow); err != nil {
		t.Fatal(err)
	}
	slow.Namespace = wns
	if err := c.Client.Create(ctx, slow); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the slow workflow timed out", func() error {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(slow), slow); err != nil {
			return err
		}
		if slow.Status.Phase != custodyv1alpha1.WorkflowFailed || len(slow.Finalizers) > 0 {
			return fmt.Errorf("phase %q", slow.Status.Phase)
		}
		return nil
	})
	grantOfABroadRole(ctx, t, c, wns)
	// A grant owner without bind on the roles they grant: admission reads the roles' rules.
	grantRolesAsOwner(ctx, t, c, wns)
	checkNightly(ctx, t, c, cron)
	podInAProtectedNamespace(ctx, t, c)

	checkEveryPermissionUsed(ctx, t, c, audit, "system:serviceaccount:"+ns+":"+release, release+"-manager")

	// Nothing the manager tried was forbidden.
	log, err := os.ReadFile(c.ManagerLog(pid)) //nolint:gosec // the cluster's own log
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(log)), "forbidden") {
		t.Errorf("the manager was refused something under the chart's RBAC:\n%s", grep(log, "orbidden"))
	}
}

// createNightly creates a WorkflowTemplate (two steps limited to one at a time, and a finally
// step) and a CronWorkflow that runs it every minute.
func createNightly(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) *custodyv1alpha1.CronWorkflow {
	t.Helper()
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: report}
spec:
  parameters: [{name: day, allowedValues: [today, yesterday]}]
  parallelism: 1
  steps:
  - {name: collect, image: example.com/collect:1, args: ["$(params.day)"]}
  - {name: count, image: example.com/count:1}
  finally:
  - {name: publish, image: example.com/publish:1, when: "workflow.phase == 'Succeeded'"}`), tpl); err != nil {
		t.Fatal(err)
	}
	cron := &custodyv1alpha1.CronWorkflow{}
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: report}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  workflowSpec:
    workflowTemplateRef: {name: report}
    parameters: [{name: day, value: yesterday}]`), cron); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{tpl, cron} {
		o.SetNamespace(ns)
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return cron
}

// checkNightly waits for the CronWorkflow's first run to succeed under the chart's RBAC (created
// by the controller, admitted as the controller, resolved from the template, finally step run),
// then deletes the CronWorkflow.
func checkNightly(ctx context.Context, t *testing.T, c *localcluster.Cluster, cron *custodyv1alpha1.CronWorkflow) {
	t.Helper()
	eventually(t, 2*time.Minute, "the CronWorkflow's first run succeeds", func() error {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(cron), cron); err != nil {
			return err
		}
		if cron.Status.LastSuccessfulRun == "" {
			return fmt.Errorf("no successful run yet: active %v, last schedule %v, conditions %v",
				cron.Status.Active, cron.Status.LastScheduleTime, cron.Status.Conditions)
		}
		return nil
	})
	run := &custodyv1alpha1.Workflow{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: cron.Namespace, Name: cron.Status.LastSuccessfulRun}, run); err != nil {
		t.Fatal(err)
	}
	if run.Status.Template == nil || run.Status.Template.Name != "report" || run.Labels[custodyv1alpha1.LabelCronWorkflow] != "report" {
		t.Errorf("run %s: template %+v, labels %v", run.Name, run.Status.Template, run.Labels)
	}
	if st := step(run, "publish"); st.Phase != custodyv1alpha1.StepSucceeded {
		t.Errorf("finally step publish is %s, want Succeeded", st.Phase)
	}
	// parallelism 1: one step started only once the other ended (both stamped by the controller).
	collect, count := step(run, "collect"), step(run, "count")
	if collect.StartTime == nil || count.StartTime == nil || collect.CompletionTime == nil || count.CompletionTime == nil {
		t.Errorf("run %s: steps without times: %+v %+v", run.Name, collect, count)
	} else if count.StartTime.Before(collect.CompletionTime) && collect.StartTime.Before(count.CompletionTime) {
		t.Errorf("run %s: collect %v-%v and count %v-%v ran at once (parallelism 1)", run.Name,
			collect.StartTime, collect.CompletionTime, count.StartTime, count.CompletionTime)
	}
	if run.Annotations[custodyv1alpha1.AnnotationOnBehalfOf] == "" {
		t.Errorf("run %s: no annotation %s naming the CronWorkflow's author", run.Name, custodyv1alpha1.AnnotationOnBehalfOf)
	}
	if err := c.Client.Delete(ctx, cron); err != nil {
		t.Fatal(err)
	}
}

// pointWebhooks points the chart's webhook configurations at the manager processes, as their
// Service would point them at the pods.
func pointWebhooks(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	url, ca, err := c.ServeWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	var muts admissionregistrationv1.MutatingWebhookConfigurationList
	var vals admissionregistrationv1.ValidatingWebhookConfigurationList
	if err := c.Client.List(ctx, &muts); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.List(ctx, &vals); err != nil {
		t.Fatal(err)
	}
	if len(muts.Items) != 1 || len(vals.Items) != 1 {
		t.Fatalf("the chart installed %d mutating and %d validating webhook configurations, want 1 and 1", len(muts.Items), len(vals.Items))
	}
	point := func(cc *admissionregistrationv1.WebhookClientConfig) {
		u := url + *cc.Service.Path
		*cc = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca}
	}
	m, v := &muts.Items[0], &vals.Items[0]
	for i := range m.Webhooks {
		point(&m.Webhooks[i].ClientConfig)
	}
	for i := range v.Webhooks {
		point(&v.Webhooks[i].ClientConfig)
	}
	if err := c.Client.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Update(ctx, v); err != nil {
		t.Fatal(err)
	}

}

// serviceAccountKubeconfig is a kubeconfig with a token of the ServiceAccount and nothing else: the
// chart's pod's identity.
func serviceAccountKubeconfig(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns, name string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the chart's ServiceAccount: %v", err)
	}
	kubeconfig := filepath.Join(c.Dir, "chart-sa.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}

	return kubeconfig
}

// createEveryKindWorkflow creates, in namespace payments, a workflow whose step post holds a
// Kubernetes role, a Secret copy and SVID properties, and returns the namespace.
func createEveryKindWorkflow(ctx context.Context, t *testing.T, c *localcluster.Cluster) string {
	t.Helper()
	wns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "payments",
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	objs := make([]client.Object, 0, 8)
	objs = append(objs, wns,
		// A class the check step names: admission reads it (to warn of one that does not exist).
		&schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "payments-batch"}, Value: 100},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ledger-reader", Namespace: wns.Name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}},
		// A role that lets a step run pods: its grant reports BroadAccess (the manager reads the
		// namespace's labels, for whether such grants need an approval there).
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "job-launcher", Namespace: wns.Name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "erp-api", Namespace: wns.Name,
			Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}}, StringData: map[string]string{"token": "e2e-value"}})
	for _, m := range []string{`
metadata: {name: ledger}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {kubernetesRole: {kind: Role, name: ledger-reader}}
  ttl: 10m`, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`, `
metadata: {name: svid}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {spiffe: {dnsNames: [erp-client.payments.example], x509TTL: 2m, audiences: [erp]}}`, `
metadata: {name: launch}
spec:
  subjects: [{workflowName: batch, steps: [launch]}]
  credential: {kubernetesRole: {kind: Role, name: job-launcher}}
  ttl: 10m`, `
metadata: {name: pay}
spec:
  steps:
  - {name: check, image: example.com/check:1, priorityClassName: payments-batch}
  - {name: post, image: example.com/post:1, dependsOn: [check], credentials: [ledger, erp, svid]}`} {
		u := &custodyv1alpha1.CredentialGrant{}
		var o client.Object = u
		if strings.Contains(m, "steps:\n  - {name: check") {
			o = &custodyv1alpha1.Workflow{}
		}
		if err := yaml.UnmarshalStrict([]byte(m), o); err != nil {
			t.Fatal(err)
		}
		o.SetNamespace(wns.Name)
		objs = append(objs, o)
	}
	for _, o := range objs {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	return wns.Name
}

// grantOfABroadRole: the grant of a role that lets a step run pods reports BroadAccess (the
// manager read the role, and the namespace's labels for whether such grants need an approval).
func grantOfABroadRole(ctx context.Context, t *testing.T, c *localcluster.Cluster, wns string) {
	t.Helper()
	eventually(t, time.Minute, "the grant of a role that runs pods reported BroadAccess", func() error {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: wns, Name: "launch"}, g); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionBroadAccess); cond == nil ||
			cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, "Role job-launcher lets a step that holds it run pods") {
			return fmt.Errorf("BroadAccess %+v", cond)
		}
		return nil
	})
}

// checkEveryPermissionUsed fails for every verb on every resource that the ClusterRole grants but
// the user never used in the API server's audit log: the chart grants nothing the controller does
// not use. bind is exempt (RBAC checks it when the controller creates a RoleBinding; it is never a
// request of its own).
func checkEveryPermissionUsed(ctx context.Context, t *testing.T, c *localcluster.Cluster, audit, user, clusterRole string) {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: clusterRole}, role); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(audit) //nolint:gosec // the test's own audit log
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef *struct {
				APIGroup    string `json:"apiGroup"`
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if line == "" || json.Unmarshal([]byte(line), &ev) != nil || ev.User.Username != user || ev.ObjectRef == nil {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		used[ev.ObjectRef.APIGroup+" "+res+" "+ev.Verb] = true
	}
	if len(used) == 0 {
		t.Fatalf("no request of %s in the audit log", user)
	}
	// What a run cannot show, and why each is still needed.
	exempt := map[string]string{
		"bind":                            "RBAC checks it when the controller creates a RoleBinding; never a request",
		"update workflows/finalizers":     "the API server checks it when the controller sets blockOwnerDeletion on a Job; never a request",
		"get jobs":                        "reads a Job the cache does not show yet, after a restart (the controller restart stories)",
		"get workflows":                   "reads a Workflow whose finalizer the cache does not show yet (identity controller, sweep)",
		"patch secrets":                   "rotates a Secret copy when its source changes during a step (the rotation story)",
		"patch events":                    "updates an Event that repeats (event series)",
		"list events":                     "reads the FailedCreate Events of a Job without a pod for 10s (TestPodCreationRefusalIsReported)",
		"mutatingwebhookconfigurations":   "controller-managed webhook certificates only (TestControllerManagedCertificates); this run uses external ones",
		"validatingwebhookconfigurations": "controller-managed webhook certificates only (TestControllerManagedCertificates); this run uses external ones",
		"use credentialgrants":            "admission checks it (a SubjectAccessReview) when the controller creates a CronWorkflow's run; never a request",
	}
	var unused []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := g + " " + res + " " + v
					switch {
					case used[key]:
					case v == "list" && used[g+" "+res+" watch"]:
						// Informers stream their initial list with watch (WatchList) where the API
						// server supports it, and list where it does not (Kubernetes 1.30-1.31).
					case exempt[v] != "" || exempt[v+" "+res] != "" || exempt[res] != "":
					default:
						unused = append(unused, fmt.Sprintf("%s %s %s", v, res, g))
					}
				}
			}
		}
	}
	if len(unused) > 0 {
		t.Errorf("%s grants what the controller never used during the run: %s", clusterRole, strings.Join(unused, "; "))
	}
}

// grantRolesAsOwner creates two kubernetesRole grants as a grant owner who holds every rule of
// the roles but may not bind them, so admission compares the roles' rules with what the owner holds.
func grantRolesAsOwner(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) {
	t.Helper()
	const owner = "grant-owner"
	configmaps := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}
	for _, o := range []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "helm-test-configmap-reader"}, Rules: configmaps},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "grant-owner", Namespace: ns}, Rules: append([]rbacv1.PolicyRule{{
			APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"create"}}}, configmaps...)},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "grant-owner", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "grant-owner"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: owner}}},
	} {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{`
metadata: {name: ledger-by-owner}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {kubernetesRole: {kind: Role, name: ledger-reader}}
  ttl: 10m`, `
metadata: {name: configs-by-owner}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: helm-test-configmap-reader}}
  ttl: 10m`} {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := yaml.UnmarshalStrict([]byte(m), g); err != nil {
			t.Fatal(err)
		}
		g.Namespace = ns
		eventually(t, 30*time.Second, "the grant owner creating "+g.Name, func() error {
			return c.As(owner).Create(ctx, g.DeepCopy())
		})
	}
}

func tail(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func grep(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out[:min(len(out), 20)], "\n")
}

// startCluster starts a local cluster of the test's own, stopped when it ends, after its managers'
// logs were checked for data races (Options.RaceDetector).
func startCluster(t *testing.T, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	c, err := localcluster.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	t.Cleanup(func() { // cleanups run last first: before Stop removes the logs
		if err := c.DataRaces(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// podInAProtectedNamespace creates a pod in a namespace that protects step pods: admission reads
// the ServiceAccount it runs as (not an attempt's: the pod is created).
func podInAProtectedNamespace(ctx context.Context, t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "protected", Labels: map[string]string{"custody.dev/protect-step-pods": "true"}}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "tools"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "tools"}, Spec: corev1.PodSpec{
		ServiceAccountName: sa.Name, Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/tools:1"}}}}
	for _, o := range []client.Object{ns, sa, pod} {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s in a protected namespace: %v", o, o.GetName(), err)
		}
	}
}
