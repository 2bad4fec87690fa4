// Package sandbox runs Custody on an embedded local cluster with the sample workflows: a local
// cluster from bin/ (internal/localcluster) with two KWOK nodes, a spire-server with the settings
// docs/identity.md recommends, and the manager built from this checkout as its own process. It
// applies config/samples into the namespace "sandbox", approves what the samples wait for, and
// reports their progress: steps, SPIFFE IDs, credentials issued and revoked.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/spiretest"
	"github.com/custody-dev/custody/internal/testenv"
)

// Namespace is where the samples run.
const Namespace = "sandbox"

// Approver is the user the sandbox approves as (by impersonation, so admission checks and stamps
// the approval as it would for a person), a member of ApproverGroup, which the samples list.
const Approver = "sandbox-approver"

// ApproverGroup is the group the samples' approvals name.
const ApproverGroup = "finance-controllers"

// Sandbox is a running sandbox.
type Sandbox struct {
	Dir        string
	Kubeconfig string
	SPIRE      *spiretest.Server
	Cluster    *localcluster.Cluster
	// AdmissionDropped counts the samples ApplySamples created again after the connection to
	// admission dropped (create).
	AdmissionDropped int
	out              io.Writer
	// samples are the objects ApplySamples created ("Kind/name"); declined, what Watch may not
	// approve and said so (something a person added, naming other approvers), at which
	// resourceVersion.
	samples  map[string]bool
	declined map[string]string
}

// Start starts SPIRE, the cluster and the manager in dir (created if needed).
func Start(ctx context.Context, dir string, out io.Writer) (sb *Sandbox, err error) {
	sb = &Sandbox{Dir: dir, out: out}
	defer func() {
		if err != nil {
			_ = sb.Stop()
			sb = nil
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "spire"), 0o750); err != nil {
		return sb, err
	}
	step := func(what string) func() {
		start := time.Now()
		_, _ = fmt.Fprintf(out, "==> %s\n", what)
		return func() { _, _ = fmt.Fprintf(out, "    done in %s\n", time.Since(start).Round(100*time.Millisecond)) }
	}
	done := step("spire-server (admin socket " + filepath.Join(dir, "spire", "server.sock") + ")")
	if sb.SPIRE, err = spiretest.StartServerIn(ctx, filepath.Join(dir, "spire"), "server.sock"); err != nil {
		return sb, err
	}
	done()
	done = step("local cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, KWOK with 2 nodes")
	sb.Cluster, err = localcluster.Start(localcluster.Options{Nodes: 2, Dir: dir, PodRunTime: 3 * time.Second,
		ResultsFromEnv: true, ExitCodeFromEnv: true})
	if err != nil {
		return sb, err
	}
	sb.Kubeconfig = sb.Cluster.Kubeconfig
	if err := sb.Cluster.EnableWebhooks(); err != nil {
		return sb, err
	}
	done()
	done = step("Custody manager (built from this checkout; log " + filepath.Join(dir, "manager.log") + ")")
	metricsAddr, err1 := localcluster.FreeAddr()
	probeAddr, err2 := localcluster.FreeAddr()
	if err := errors.Join(err1, err2); err != nil {
		return sb, err
	}
	if _, err := sb.Cluster.StartManager("--metrics-bind-address="+metricsAddr, "--health-probe-bind-address="+probeAddr,
		"--trust-domain="+spiretest.TrustDomain, "--spire-server-address="+sb.SPIRE.Address); err != nil {
		return sb, err
	}
	admission, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := sb.Cluster.WaitForAdmission(admission); err != nil {
		// Say why: the manager's last lines (it may have failed to start).
		return sb, fmt.Errorf("%w\n%s", err, sb.ManagerLogTail())
	}
	done()
	return sb, nil
}

// ManagerLogTail says whether a process of the sandbox (the manager, the cluster's) exited, and
// returns the last lines of the manager's log: why something failed (the manager may have
// stopped, or refused a request).
func (sb *Sandbox) ManagerLogTail() string {
	var exited string
	if sb.Cluster != nil {
		if err := sb.Cluster.Exited(); err != nil {
			exited = err.Error() + "\n"
		}
	}
	log, err := os.ReadFile(filepath.Join(sb.Dir, "manager.log")) //nolint:gosec // our own directory
	if err != nil {
		return exited + "the manager's log: " + err.Error()
	}
	if len(log) > 8192 {
		log = log[len(log)-8192:]
	}
	return exited + "the manager's log ends:\n" + string(log)
}

// Stop stops the manager, the cluster and SPIRE. The directory stays (Remove deletes it).
func (sb *Sandbox) Stop() error {
	var errs []error
	if sb.Cluster != nil {
		errs = append(errs, sb.Cluster.Stop())
	}
	if sb.SPIRE != nil {
		errs = append(errs, sb.SPIRE.Stop())
	}
	return errors.Join(errs...)
}

// ApplySamples creates the namespace, what the samples' grants hand out (a grantable Secret with
// a demo value, a Role), and every object in config/samples.
func (sb *Sandbox) ApplySamples(ctx context.Context) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	prereqs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace,
			// As docs/security.md advises for namespaces where steps hold credentials.
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", custodyv1alpha1.LabelProtectStepPods: "true"}}},
	}
	// Approvers may read and annotate workflows and grants (what custody-workflow-editor and
	// custody-credentialgrant-editor give in a real install), nothing else.
	const approvers = "approvers"
	prereqs = append(prereqs,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: approvers, Namespace: Namespace},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{custodyv1alpha1.GroupVersion.Group},
				Resources: []string{"workflows", "credentialgrants"}, Verbs: []string{"get", "list", "watch", "patch"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: approvers, Namespace: Namespace},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: approvers},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: ApproverGroup}}})
	// The Secrets the samples' secret grants hand out, opted in, with demo values.
	for _, name := range []string{"erp-api", "idp-admin-token", "crm-api", "ticketing-api", "orders-db-backup"} {
		prereqs = append(prereqs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace,
			Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}},
			StringData: map[string]string{"token": "sandbox-demo-" + name, "password": "sandbox-demo-" + name}})
	}
	for _, obj := range prereqs {
		if err := sb.create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "custody_*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f) //nolint:gosec // the checkout's own samples
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(Namespace)
			if err := sb.create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating %s %s from %s: %w", u.GetKind(), u.GetName(), filepath.Base(f), err)
			}
			if sb.samples == nil {
				sb.samples = map[string]bool{}
			}
			sb.samples[u.GetKind()+"/"+u.GetName()] = true
			by := ""
			if creator, ok := u.GetAnnotations()[custodyv1alpha1.AnnotationCreatedBy]; ok {
				by = ", created-by " + creator
			}
			_, _ = fmt.Fprintf(sb.out, "    applied %s %s (%s)%s\n", u.GetKind(), u.GetName(), filepath.Base(f), by)
		}
	}
	return nil
}

// create creates a sample. When the API server could not reach admission (the connection to the
// webhook dropped: "EOF") while the manager still runs, it says so and tries again, up to three
// times, as a person would run kubectl apply again; any other error, or a manager that exited,
// is returned at once.
func (sb *Sandbox) create(ctx context.Context, u client.Object) error {
	for try := 1; ; try++ {
		obj, _ := u.DeepCopyObject().(client.Object)
		err := sb.Cluster.Client.Create(ctx, obj)
		if err == nil || try == 3 || !strings.Contains(err.Error(), "failed calling webhook") || !strings.HasSuffix(err.Error(), "EOF") {
			return err
		}
		if exited := sb.Cluster.Exited(); exited != nil {
			return errors.Join(err, exited)
		}
		sb.AdmissionDropped++
		kind := u.GetObjectKind().GroupVersionKind().Kind
		if kind == "" {
			kind = fmt.Sprintf("%T", u)
		}
		_, _ = fmt.Fprintf(sb.out, "    admission dropped the connection creating %s %s (%v); trying again\n", kind, u.GetName(), err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// Watch approves what waits for approval and prints every change of the samples until all
// Workflows finished (or ctx ends). It returns the final Workflows.
func (sb *Sandbox) Watch(ctx context.Context) ([]custodyv1alpha1.Workflow, error) {
	c := sb.Cluster.Client
	seen := map[string]string{}
	for {
		var grants custodyv1alpha1.CredentialGrantList
		if err := c.List(ctx, &grants, client.InNamespace(Namespace)); err != nil {
			return nil, err
		}
		for i := range grants.Items {
			if err := sb.approveGrant(ctx, &grants.Items[i]); err != nil {
				return nil, err
			}
		}
		var list custodyv1alpha1.WorkflowList
		if err := c.List(ctx, &list, client.InNamespace(Namespace)); err != nil {
			return nil, err
		}
		finished := len(list.Items) > 0
		for i := range list.Items {
			wf := &list.Items[i]
			if err := sb.approveSteps(ctx, wf); err != nil {
				return nil, err
			}
			for _, line := range describe(wf) {
				key := wf.Name + "/" + strings.SplitN(line, ":", 2)[0]
				if seen[key] != line {
					seen[key] = line
					_, _ = fmt.Fprintf(sb.out, "%-22s %s\n", wf.Name, line)
				}
			}
			switch wf.Status.Phase {
			case custodyv1alpha1.WorkflowSucceeded, custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
			default:
				finished = false
			}
		}
		if finished {
			return list.Items, nil
		}
		select {
		case <-ctx.Done():
			return list.Items, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// describe is one line per step and one for the workflow: phase, SPIFFE ID, credentials.
func describe(wf *custodyv1alpha1.Workflow) []string {
	lines := make([]string, 0, 1+len(wf.Status.Steps))
	lines = append(lines, fmt.Sprintf("workflow: %s %s", wf.Status.Phase, wf.Status.Progress))
	for _, st := range wf.Status.Steps {
		line := fmt.Sprintf("step %s: %s", st.Name, st.Phase)
		if st.Reason != "" {
			line += " (" + st.Reason + ")"
		}
		if st.Identity != nil && st.Identity.State != custodyv1alpha1.IdentityDisabled {
			line += fmt.Sprintf(" identity %s %s", st.Identity.State, st.SPIFFEID)
		}
		for _, cr := range st.Credentials {
			state := "held"
			if cr.RevokedAt != nil {
				state = "revoked"
			}
			line += fmt.Sprintf(" [%s %s %s]", cr.Kind, cr.Grant, state)
		}
		lines = append(lines, line)
	}
	return lines
}

// approver is a client acting as the sandbox's approver.
func (sb *Sandbox) approver() client.Client {
	return sb.Cluster.As(Approver, ApproverGroup)
}

// approve annotates obj (id: "Kind/name", as ApplySamples records samples) as the approver, as
// `kubectl annotate` would; admission stamps the value. When admission refuses, that is an error
// for a sample, which the samples need; for anything else a person added (it names other
// approvers, say), it says so once, returns false, and tries again only once the object changed.
func (sb *Sandbox) approve(ctx context.Context, obj client.Object, id, key, what string) (bool, error) {
	if rv, tried := sb.declined[what]; tried && rv == obj.GetResourceVersion() {
		return false, nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"approved"}}}`, key)
	err := sb.approver().Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(patch)))
	switch {
	case err == nil:
		return true, nil
	case sb.samples[id] || !apierrors.IsForbidden(err):
		return false, fmt.Errorf("approving %s: %w", what, err)
	}
	if sb.declined == nil {
		sb.declined = map[string]string{}
	}
	if _, said := sb.declined[what]; !said {
		_, _ = fmt.Fprintf(sb.out, "%-22s not approving %s (not a sample; approve it yourself): %v\n", "", what, err)
	}
	sb.declined[what] = obj.GetResourceVersion()
	return false, nil
}

// approveSteps approves every step that waits for approval, as the sandbox's approver.
func (sb *Sandbox) approveSteps(ctx context.Context, wf *custodyv1alpha1.Workflow) error {
	for _, st := range wf.Status.Steps {
		key := custodyv1alpha1.AnnotationApprovePrefix + st.Name
		if st.Phase != custodyv1alpha1.StepWaitingForApproval || wf.Annotations[key] != "" {
			continue
		}
		approved, err := sb.approve(ctx, wf, "Workflow/"+wf.Name, key, fmt.Sprintf("step %s of %s", st.Name, wf.Name))
		if err != nil {
			return err
		}
		if approved {
			_, _ = fmt.Fprintf(sb.out, "%-22s approved step %s as %s: %s %s\n", wf.Name, st.Name, Approver, key, wf.Annotations[key])
		}
	}
	return nil
}

// approveGrant approves a grant that requires approval and has none.
func (sb *Sandbox) approveGrant(ctx context.Context, g *custodyv1alpha1.CredentialGrant) error {
	if g.Spec.Approval == nil || !g.Spec.Approval.Required || g.Annotations[custodyv1alpha1.AnnotationApproveGrant] != "" {
		return nil
	}
	approved, err := sb.approve(ctx, g, "CredentialGrant/"+g.Name, custodyv1alpha1.AnnotationApproveGrant, "grant "+g.Name)
	if approved {
		_, _ = fmt.Fprintf(sb.out, "%-22s approved grant %s as %s: %s\n", "", g.Name, Approver,
			g.Annotations[custodyv1alpha1.AnnotationApproveGrant])
	}
	return err
}

// Leftovers counts what must not remain once every sample finished: SPIRE entries, per-step
// ServiceAccounts, RoleBindings and Secret copies.
func (sb *Sandbox) Leftovers(ctx context.Context) (string, error) {
	c := sb.Cluster.Client
	var sas corev1.ServiceAccountList
	var copies corev1.SecretList
	if err := c.List(ctx, &sas, client.InNamespace(Namespace), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
		return "", err
	}
	if err := c.List(ctx, &copies, client.InNamespace(Namespace), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
		return "", err
	}
	entries, err := sb.SPIRE.CLI(ctx, "entry", "count")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d step ServiceAccounts, %d Secret copies, SPIRE: %s", len(sas.Items), len(copies.Items),
		strings.TrimSpace(entries)), nil
}
