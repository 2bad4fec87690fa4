package e2e

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/localcluster"
)

// TestFaults runs 50 concurrent workflows (3 chained steps, the middle one holding a role and a
// Secret copy) while the controller is killed with SIGKILL and restarted several times,
// spire-server is stopped and restarted, the grants are suspended and lifted, and one workflow is
// deleted, one cancelled and one times out; in every fifth the middle step fails on both its
// attempts (half of those allowed to, with onFailure: Continue); the last five share a concurrency
// group and must run one after the other, the six before them one with concurrencyLimit 2. Every workflow must reach its expected end, no
// attempt may have two Jobs, and nothing issued may remain.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	const n, serialRuns, pairRuns = 50, 5, 6
	createFaultCredentials(ctx, t, ns)
	for i := range n {
		group := ""
		switch {
		case i >= n-serialRuns:
			group = "serial"
		case i >= n-serialRuns-pairRuns:
			group = "pairs"
		}
		createWorkflow(ctx, t, ns, faultRun(i, group))
	}
	started := time.Now()
	key := func(i int) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("run-%02d", i)} }

	// Faults, in a fixed order at random moments.
	kills := 0
	kill := func() {
		time.Sleep(time.Duration(500+rand.IntN(2500)) * time.Millisecond) //nolint:gosec // test timing
		if err := cluster.KillManager(managerPID); err != nil {
			t.Fatal(err)
		}
		kills++
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond) //nolint:gosec // test timing
		var err error
		if managerPID, err = cluster.StartManager(managerArgs...); err != nil {
			t.Fatal(err)
		}
	}
	kill()
	if err := deleteWorkflow(ctx, key(0)); err != nil {
		t.Fatal(err)
	}
	// Writes to Workflows go through admission, which is down while the manager restarts.
	if err := whenAdmitted(ctx, func() error { return cancelWorkflow(ctx, key(1)) }); err != nil {
		t.Fatal(err)
	}
	kill()
	if err := spireServer.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if err := spireServer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	setSuspended(ctx, t, ns, "role", true)
	kill()
	time.Sleep(2 * time.Second)
	setSuspended(ctx, t, ns, "role", false)
	kill()

	// Every workflow ends as expected.
	want := func(i int) custodyv1alpha1.WorkflowPhase {
		switch {
		case i == 1:
			return custodyv1alpha1.WorkflowCancelled
		case i == 2, failing(i) == "fails":
			return custodyv1alpha1.WorkflowFailed
		}
		return custodyv1alpha1.WorkflowSucceeded
	}
	attempts := 0
	eventually(t, 5*time.Minute, "every workflow at its expected end", func() error {
		attempts = 0
		var wrong []string
		for i := range n {
			wf := &custodyv1alpha1.Workflow{}
			err := cluster.Client.Get(ctx, key(i), wf)
			if i == 0 {
				if !apierrors.IsNotFound(err) {
					wrong = append(wrong, fmt.Sprintf("run-00 not deleted (%v)", err))
				}
				continue
			}
			if err != nil {
				return err
			}
			if wf.Status.Phase != want(i) || len(wf.Finalizers) != 0 {
				wrong = append(wrong, fmt.Sprintf("%s %s %v", wf.Name, wf.Status.Phase, wf.Finalizers))
			}
			for _, st := range wf.Status.Steps {
				attempts += int(st.Attempt)
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("%d not there yet: %s", len(wrong), strings.Join(wrong[:min(len(wrong), 5)], "; "))
		}
		return nil
	})
	elapsed := time.Since(started)

	runs := func(from, to int) iter.Seq[client.ObjectKey] {
		return func(yield func(client.ObjectKey) bool) {
			for i := from; i < to && yield(key(i)); i++ {
			}
		}
	}
	checkAtMost(ctx, t, runs(n-serialRuns, n), 1)
	if most := checkAtMost(ctx, t, runs(n-serialRuns-pairRuns, n-serialRuns), 2); most < 2 {
		t.Logf("the runs of concurrency group pairs (2 at a time) happened to run one at a time")
	}

	// No attempt has two Jobs.
	var jobs batchv1.JobList
	if err := cluster.Client.List(ctx, &jobs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	perAttempt := map[string]int{}
	for _, j := range jobs.Items {
		perAttempt[j.Labels[custodyv1alpha1.LabelWorkflow]+"/"+j.Labels[custodyv1alpha1.LabelStep]+"/"+j.Labels[custodyv1alpha1.LabelAttempt]]++
	}
	for k, c := range perAttempt {
		if c != 1 {
			t.Errorf("attempt %s has %d Jobs", k, c)
		}
	}
	// Nothing issued remains.
	leftovers := countLeftovers(ctx, t, ns)
	if leftovers != "" {
		t.Errorf("left behind: %s", leftovers)
	}
	t.Logf("faults: %d workflows, %d step attempts, %d controller kills (SIGKILL), 1 SPIRE restart, 1 grant suspension, "+
		"%s to the end; leftovers: %q", n, attempts, kills, elapsed.Round(time.Second), leftovers)
	if out := os.Getenv("CUSTODY_E2E_REPORT"); out != "" {
		line := fmt.Sprintf("| %s | %d | %d | %d | %s | %q |\n", time.Now().UTC().Format("2006-01-02"), n, attempts, kills,
			elapsed.Round(time.Second), leftovers)
		_ = os.WriteFile(out, []byte(line), 0o600) //nolint:gosec // a path the developer chose
	}
}

// faultRun is the manifest of run i of the fault matrix; the runs of group "serial" run one at a
// time, those of "pairs" two at a time.
func faultRun(i int, group string) string {
	spec, gate, fanOut := "", "", ""
	if i == 2 {
		spec = "timeout: 4s"
	}
	switch group {
	case "serial":
		// The last runs share a concurrency group: one at a time, even across the kills.
		spec = "concurrencyGroup: serial"
	case "pairs":
		spec = "concurrencyGroup: pairs\n  concurrencyLimit: 2"
	}
	if i == 1 {
		// run-01 is cancelled mid-run: its last step waits for an approval nobody gives, so
		// it cannot finish before the cancel lands, however long the restarts take.
		gate = ", approval: {approvers: {users: [nobody]}}"
	}
	if i >= 3 && i%2 == 1 {
		// Every other run holds its credentials in two forEach items of b at once.
		fanOut = ", forEach: [x, y]"
	}
	if failing(i) != "" {
		// Every fifth run's b fails on both its attempts, each holding credentials: half of
		// them fail the run, the other half are allowed to (onFailure: Continue).
		fanOut += ", retries: {limit: 1, backoff: {duration: 1s}}, env: [{name: " + localcluster.ExitCodeEnv + ", value: \"2\"}]"
		if failing(i) == "allowed" {
			fanOut += ", onFailure: Continue"
		}
	}
	return fmt.Sprintf(`
metadata: {name: run-%02d}
spec:
  %s
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1, dependsOn: [a], credentials: [role, api]%s}
  - {name: c, image: example.com/w:1, dependsOn: [b]%s}`, i, spec, fanOut, gate)
}

// checkAtMost checks that no more than limit runs of a concurrency group ran at once, even
// across the kills: when each started its first step, fewer than limit others had started and
// not yet ended (times in status have a resolution of one second: a run that ended in the second
// another started is given the benefit of the doubt). It returns the most that ran at once.
func checkAtMost(ctx context.Context, t *testing.T, keys iter.Seq[client.ObjectKey], limit int) int {
	t.Helper()
	var group []*custodyv1alpha1.Workflow
	for k := range keys {
		wf := &custodyv1alpha1.Workflow{}
		if err := cluster.Client.Get(ctx, k, wf); err != nil {
			t.Fatal(err)
		}
		group = append(group, wf)
	}
	firstStart := func(wf *custodyv1alpha1.Workflow) time.Time {
		var first time.Time
		for _, st := range wf.Status.Steps {
			if st.StartTime != nil && (first.IsZero() || st.StartTime.Time.Before(first)) {
				first = st.StartTime.Time
			}
		}
		return first
	}
	most := 0
	for _, cur := range group {
		start := firstStart(cur)
		if start.IsZero() {
			continue // it started no step
		}
		var running []string
		for _, other := range group {
			if other == cur || firstStart(other).IsZero() || other.Status.CompletionTime == nil {
				continue
			}
			if !firstStart(other).After(start) && other.Status.CompletionTime.After(start) &&
				(firstStart(other).Before(start) || other.Name < cur.Name) {
				running = append(running, other.Name)
			}
		}
		most = max(most, len(running)+1)
		if len(running) >= limit {
			t.Errorf("%s started at %s while %d runs of its concurrency group ran (%s); at most %d may run at once", cur.Name,
				start.Format(time.RFC3339), len(running), strings.Join(running, ", "), limit)
		}
	}
	return most
}

// failing says how step b of the fault matrix's run i fails: "fails" (the run fails), "allowed"
// (onFailure: Continue), or "" (it does not).
func failing(i int) string {
	switch {
	case i < 5 || i%5 != 0:
		return ""
	case i%10 == 5:
		return "fails"
	}
	return "allowed"
}

func createFaultCredentials(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	objs := make([]client.Object, 0, 4)
	objs = append(objs,
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns,
			Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}}, StringData: map[string]string{"token": "e2e"}})
	for _, manifest := range []string{`
metadata: {name: role}
spec:
  subjects: [{workflowSelector: {matchExpressions: [{key: x, operator: DoesNotExist}]}, steps: [b]}]
  credential: {kubernetesRole: {kind: Role, name: reader}}`, `
metadata: {name: api}
spec:
  subjects: [{workflowSelector: {matchExpressions: [{key: x, operator: DoesNotExist}]}, steps: [b]}]
  credential: {secret: {name: api, keys: [token]}}`} {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := yaml.UnmarshalStrict([]byte(manifest), g); err != nil {
			t.Fatal(err)
		}
		g.Namespace = ns
		objs = append(objs, g)
	}
	for _, o := range objs {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

func deleteWorkflow(ctx context.Context, key client.ObjectKey) error {
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	return cluster.Client.Delete(ctx, wf)
}

func cancelWorkflow(ctx context.Context, key client.ObjectKey) error {
	wf := &custodyv1alpha1.Workflow{}
	if err := cluster.Client.Get(ctx, key, wf); err != nil {
		return err
	}
	patch := client.MergeFrom(wf.DeepCopy())
	wf.Spec.Cancel = true
	return cluster.Client.Patch(ctx, wf, patch)
}

func setSuspended(ctx context.Context, t *testing.T, ns, name string, suspended bool) {
	t.Helper()
	g := &custodyv1alpha1.CredentialGrant{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, g); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(g.DeepCopy())
	g.Spec.Suspended = suspended
	if err := whenAdmitted(ctx, func() error { return cluster.Client.Patch(ctx, g, patch) }); err != nil {
		t.Fatal(err)
	}
}

// whenAdmitted retries a write that admission refused because no manager answered yet (the
// webhook's failurePolicy is Fail, as in a real install), for up to a minute.
func whenAdmitted(ctx context.Context, write func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := write()
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// countLeftovers describes whatever an attempt held that still exists ("" when nothing does).
func countLeftovers(ctx context.Context, t *testing.T, ns string) string {
	t.Helper()
	var sas corev1.ServiceAccountList
	var rbs rbacv1.RoleBindingList
	var copies corev1.SecretList
	deadline := time.Now().Add(time.Minute)
	for {
		if err := cluster.Client.List(ctx, &sas, client.InNamespace(ns), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Client.List(ctx, &rbs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Client.List(ctx, &copies, client.InNamespace(ns), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
			t.Fatal(err)
		}
		reg, err := spire.Dial(ctx, spire.Options{Address: spireServer.Address})
		if err != nil {
			t.Fatal(err)
		}
		entries, err := reg.List(ctx, identity.DefaultEntryIDPrefix)
		_ = reg.Close()
		if err != nil {
			t.Fatal(err)
		}
		total := len(sas.Items) + len(rbs.Items) + len(copies.Items) + len(entries)
		if total == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			var which []string // what is left, and whose: enough to tell which race left it
			for _, o := range append(append(objectsOf(sas.Items), objectsOf(rbs.Items)...), objectsOf(copies.Items)...) {
				l := o.GetLabels()
				which = append(which, fmt.Sprintf("%s (%s/%s attempt %s)", o.GetName(), l[custodyv1alpha1.LabelWorkflow],
					l[custodyv1alpha1.LabelStep], l[custodyv1alpha1.LabelAttempt]))
			}
			t.Logf("left behind: %s; entries %v", strings.Join(which, ", "), entries)
			return fmt.Sprintf("%d ServiceAccounts, %d RoleBindings, %d Secret copies, %d SPIRE entries",
				len(sas.Items), len(rbs.Items), len(copies.Items), len(entries))
		}
		time.Sleep(time.Second)
	}
}

// objectsOf returns the items of a list as objects.
func objectsOf[T any, PT interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, 0, len(items))
	for i := range items {
		out = append(out, PT(&items[i]))
	}
	return out
}
