// Package bench measures Custody's throughput on a local cluster (internal/localcluster) against a
// baseline of the same DAGs run as bare Jobs by a minimal driver. It is a measurement, not a test:
// it runs only under `make bench` (CUSTODY_BENCH=1) and asserts nothing about speed; it prints the
// numbers that docs/benchmarks.md records with the machine and the method.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/spiretest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestBenchmark runs N workflows of M steps in a chain (step k depends on step k-1), first as bare
// Jobs, then through Custody, on the same cluster.
func TestBenchmark(t *testing.T) {
	if os.Getenv("CUSTODY_BENCH") == "" {
		t.Skip("a measurement, not a test: run it with `make bench`")
	}
	n, m := envInt("BENCH_WORKFLOWS", 200), envInt("BENCH_STEPS", 3)
	log.SetLogger(logr.Discard()) // the bench's own clients; the manager logs to its file
	c, err := localcluster.Start(localcluster.Options{Nodes: 4, Dir: os.Getenv("CUSTODY_E2E_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx := context.Background()

	// A cluster just started, and a manager just started, keep the API server busy for a few
	// seconds (discovery, OpenAPI, informers' first lists): each phase starts once that is over.
	settle := time.Duration(envInt("BENCH_SETTLE_SECONDS", 15)) * time.Second
	time.Sleep(settle)
	w0, cpu0 := clusterWrites(ctx, t, c), clusterCPU(t)
	baseProfiled := profileAPIServer(ctx, t, c, ".baseline")
	baseHandoffs := watchHandoffs(ctx, t, c, "bench-baseline")
	baseline := runBaseline(ctx, t, c, n, m)
	baseHandoff := baseHandoffs.result()
	w1, cpu1 := clusterWrites(ctx, t, c), clusterCPU(t)
	baseProfiled()
	t.Logf("baseline: %d chains x %d Jobs in %s (%.1f steps/s)", n, m, baseline, float64(n*m)/baseline.Seconds())

	var managerArgs []string
	if addr := os.Getenv("BENCH_MANAGER_PPROF"); addr != "" {
		// go tool pprof http://<addr>/debug/pprof/profile while the Custody phase runs.
		managerArgs = append(managerArgs, "--pprof-bind-address="+addr)
	}
	mgr := startManager(t, c, managerArgs...)
	time.Sleep(settle)
	before := mgr.mutatingRequests(t)
	w2, cpu2 := clusterWrites(ctx, t, c), clusterCPU(t)
	profiled := profileAPIServer(ctx, t, c, "")
	custodyHandoffs := watchHandoffs(ctx, t, c, "bench-custody")
	custody := runCustody(ctx, t, c, n, m)
	custodyHandoff := custodyHandoffs.result()
	w3, cpu3 := clusterWrites(ctx, t, c), clusterCPU(t)
	profiled()
	after := mgr.mutatingRequests(t)
	events := countEvents(ctx, t, c, "bench-custody")
	rss := mgr.peakRSS(t)
	reconciles, reconcileMs, queuedMs := reconcileStats(mgr.metrics(t), "custody-workflow")
	cpu := mgr.cpuTime(t)

	steps := float64(n * m)
	mutating := after - before
	baseWrites, baseTop := writesPerStep(w0, w1, steps)
	msPerStep := func(d time.Duration) float64 { return float64(d.Milliseconds()) / steps }
	custodyWrites, custodyTop := writesPerStep(w2, w3, steps)
	report := fmt.Sprintf(`| workflows x steps | %d x %d |
| bare Jobs (baseline): wall time to all complete | %s (%.1f steps/s) |
| Custody: wall time to all Succeeded | %s (%.1f steps/s) |
| throughput ratio (Custody / baseline) | %.2f |
| controller mutating API requests | %.0f (%.2f per step) |
| of which Events (events.k8s.io objects written) | %d (%.2f per step) |
| mutating requests per step without Events | %.2f |
| controller peak RSS (VmHWM) | %s |
| controller CPU time (user+system, whole run) | %s |
| reconciles / mean reconcile time / mean time queued | %.0f / %.0f ms / %.0f ms |
| cluster mutating requests per step, all clients: bare Jobs | %.2f (%s) |
| cluster mutating requests per step, all clients: Custody | %.2f (%s) |
| control-plane CPU per step (every process the bench started): bare Jobs / Custody | %.0f ms / %.0f ms (ratio %.2f) |
| CPU per step by process, ms: bare Jobs | %s |
| CPU per step by process, ms: Custody | %s |
`, n, m, baseline.Round(100*time.Millisecond), steps/baseline.Seconds(),
		custody.Round(100*time.Millisecond), steps/custody.Seconds(), baseline.Seconds()/custody.Seconds(),
		mutating, mutating/steps, events, float64(events)/steps, (mutating-float64(events))/steps, rss, cpu,
		reconciles, reconcileMs, queuedMs,
		baseWrites, baseTop, custodyWrites, custodyTop,
		msPerStep(cpu1.total()-cpu0.total()), msPerStep(cpu3.total()-cpu2.total()),
		float64(cpu1.total()-cpu0.total())/float64(cpu3.total()-cpu2.total()), cpu1.perStep(cpu0, steps), cpu3.perStep(cpu2, steps))
	for _, ns := range []string{"bench-baseline", "bench-custody"} {
		run, first, last, firstSteps := jobTimings(ctx, t, c, ns)
		report += fmt.Sprintf("| %s: mean Job run (created to complete) | %.2fs |\n", ns, run)
		report += fmt.Sprintf("| %s: first Job created to last Job complete | %s; all first steps' Jobs created within %s |\n",
			ns, last.Sub(first), firstSteps.Sub(first))
	}
	report += fmt.Sprintf("| handoff (a step's Job seen complete to the next step's Job seen), p50 / p90 / max: bare Jobs | %s |\n",
		summary(baseHandoff))
	report += fmt.Sprintf("| handoff, p50 / p90 / max: Custody | %s |\n", summary(custodyHandoff))
	t.Logf("controller requests by verb (whole run): %v; cache reads: %s", mgr.requestsByVerb(t), mgr.consistencyWaits(t))
	t.Logf("results:\n%s", report)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o600); err != nil { //nolint:gosec // a path the developer chose
			t.Fatal(err)
		}
	}
}

// TestBenchmarkRequestCosts measures what each kind of request Custody makes per step costs the
// control plane: BENCH_REQUESTS (default 400) requests of a kind from 8 clients on an otherwise
// idle local cluster, and the CPU kube-apiserver and etcd used meanwhile, per request.
func TestBenchmarkRequestCosts(t *testing.T) {
	if os.Getenv("CUSTODY_BENCH") == "" {
		t.Skip("a measurement, not a test: run it with `make bench`")
	}
	c, err := localcluster.Start(localcluster.Options{Nodes: 1, Dir: os.Getenv("CUSTODY_E2E_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx := context.Background()
	const ns = "bench-requests"
	namespace(ctx, t, c, ns)
	n := envInt("BENCH_REQUESTS", 400)
	// Workflows to patch, with the status of a 3-step run under way.
	const workers = 8
	wfs := make([]*custodyv1alpha1.Workflow, workers)
	for w := range workers {
		wfs[w] = benchWorkflow(ns, fmt.Sprintf("patched-%d", w), 3)
		if err := c.Client.Create(ctx, wfs[w]); err != nil {
			t.Fatal(err)
		}
		before := wfs[w].DeepCopy()
		now := metav1.Now()
		wfs[w].Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowRunning, StartTime: &now, ObservedGeneration: 1}
		for _, st := range wfs[w].Spec.Steps {
			wfs[w].Status.Steps = append(wfs[w].Status.Steps, custodyv1alpha1.StepStatus{Name: st.Name,
				Phase: custodyv1alpha1.StepPending, Reason: "WaitingForDependencies", Message: "waiting for " + strings.Join(st.DependsOn, ", ")})
		}
		for _, typ := range []string{"Ready", "Reconciling", "Stalled"} {
			meta.SetStatusCondition(&wfs[w].Status.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionFalse,
				Reason: "Running", Message: "steps are running", ObservedGeneration: 1})
		}
		if err := c.Client.Status().Patch(ctx, wfs[w], client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	var seq atomic.Int32
	// startAttempt changes what a reconcile that starts attempt k of a step changes in status.
	startAttempt := func(wf *custodyv1alpha1.Workflow, k int32) {
		st := &wf.Status.Steps[int(k)%len(wf.Status.Steps)]
		now := metav1.Now()
		st.Phase, st.Reason, st.StartTime = custodyv1alpha1.StepRunning, "Started", &now
		st.Attempt, st.JobName = k, fmt.Sprintf("%s-%s-%d-abcdef", wf.Name, st.Name, k)
		st.Message = fmt.Sprintf("Attempt %d runs as Job %s", k, st.JobName)
	}
	kinds := []struct {
		name string
		op   func(ctx context.Context, w int) error
	}{
		{"Job create (the pod template of a step)", func(ctx context.Context, _ int) error {
			j := jobspec.Job(jobspec.Attempt{Workflow: wfs[0], Step: &custodyv1alpha1.Step{Name: "s", Image: "registry.example.com/bench:1"},
				Number: seq.Add(1)})
			j.OwnerReferences, j.Spec.Template.Spec.ServiceAccountName = nil, ""
			j.Spec.Suspend = ptr.To(true) // measured alone: no pods follow
			return c.Client.Create(ctx, j)
		}},
		{"ServiceAccount create and delete (one pair)", func(ctx context.Context, _ int) error {
			sa := jobspec.ServiceAccount(jobspec.Attempt{Workflow: wfs[0], Step: &custodyv1alpha1.Step{Name: "s"}, Number: seq.Add(1)})
			sa.OwnerReferences = nil
			if err := c.Client.Create(ctx, sa); err != nil {
				return err
			}
			return c.Client.Delete(ctx, sa)
		}},
		{"Event create (events.k8s.io/v1, regarding a Workflow)", func(ctx context.Context, w int) error {
			return c.Client.Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ev-%d", seq.Add(1))},
				EventTime:  metav1.NowMicro(), ReportingController: "custody.dev/workflow", ReportingInstance: "bench",
				Action: "Start", Reason: "Started", Type: corev1.EventTypeNormal,
				Regarding: corev1.ObjectReference{APIVersion: custodyv1alpha1.GroupVersion.String(), Kind: "Workflow",
					Namespace: ns, Name: wfs[w].Name, UID: wfs[w].UID},
				Note: "Step s1: attempt 1 started as Job " + wfs[w].Name + "-s1-1-abcdef"})
		}},
		{"Workflow create (3 chained steps)", func(ctx context.Context, _ int) error {
			return c.Client.Create(ctx, benchWorkflow(ns, fmt.Sprintf("created-%d", seq.Add(1)), 3))
		}},
		{"Workflow status patch (a step's phase, message and times; optimistic lock)", func(ctx context.Context, w int) error {
			wf := wfs[w]
			before := wf.DeepCopy()
			startAttempt(wf, seq.Add(1))
			return c.Client.Status().Patch(ctx, wf, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}),
				client.FieldOwner("custody-workflow"))
		}},
		{"Workflow status update (the same change sent whole: PUT)", func(ctx context.Context, w int) error {
			wf := wfs[w]
			startAttempt(wf, seq.Add(1))
			return c.Client.Status().Update(ctx, wf, client.FieldOwner("custody-workflow"))
		}},
	}
	report := "| request | control-plane CPU per request (kube-apiserver + etcd) | requests/s from 8 clients |\n|---|---|---|\n"
	for _, k := range kinds {
		before, start := clusterCPU(t), time.Now()
		g, gctx := errgroup.WithContext(ctx)
		for w := range workers {
			g.Go(func() error {
				for i := w; i < n; i += workers {
					if err := k.op(gctx, w); err != nil {
						return fmt.Errorf("%s: %w", k.name, err)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		elapsed, after := time.Since(start), clusterCPU(t)
		used := (after["kube-apiserver"] - before["kube-apiserver"]) + (after["etcd"] - before["etcd"])
		report += fmt.Sprintf("| %s | %.2f ms | %.0f |\n", k.name, float64(used.Microseconds())/1000/float64(n), float64(n)/elapsed.Seconds())
	}
	t.Logf("results (%d requests of each kind):\n%s", n, report)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // a path the developer chose
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		if _, err := fmt.Fprintf(f, "\n%s", report); err != nil {
			t.Fatal(err)
		}
	}
}

// benchWorkflow is a Workflow of m chained steps (step k depends on step k-1).
func benchWorkflow(ns, name string, m int) *custodyv1alpha1.Workflow {
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	for k := range m {
		st := custodyv1alpha1.Step{Name: fmt.Sprintf("s%d", k), Image: "registry.example.com/bench:1"}
		if k > 0 {
			st.DependsOn = []string{fmt.Sprintf("s%d", k-1)}
		}
		wf.Spec.Steps = append(wf.Spec.Steps, st)
	}
	return wf
}

// TestBenchmarkIdentity runs N workflows of M chained steps through Custody with step identity on
// (a real spire-server from bin/, over its admin socket) and reports how long after the
// controller saw an attempt's pod on a node its entry existed (registration), and how long after
// it saw the attempt end the entry was gone (revocation), as p50/p99 from the manager's
// histograms. KWOK keeps each pod running BENCH_POD_RUN_TIME (default 2s) so that every attempt
// is registered while it runs.
func TestBenchmarkIdentity(t *testing.T) {
	if os.Getenv("CUSTODY_BENCH") == "" {
		t.Skip("a measurement, not a test: run it with `make bench`")
	}
	n, m := envInt("BENCH_WORKFLOWS", 200), envInt("BENCH_STEPS", 3)
	runTime := time.Duration(envInt("BENCH_POD_RUN_TIME_MS", 2000)) * time.Millisecond
	srv, err := spiretest.StartServer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c, err := localcluster.Start(localcluster.Options{Nodes: 4, Dir: os.Getenv("CUSTODY_E2E_DIR"), PodRunTime: runTime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx := context.Background()
	mgr := startManager(t, c, "--trust-domain="+spiretest.TrustDomain, "--spire-server-address="+srv.Address)
	wall := runCustody(ctx, t, c, n, m)
	// Revocation of the last attempts may trail the workflows' success by a reconcile.
	deadline := time.Now().Add(time.Minute)
	const reg, rev = "custody_identity_registration_seconds", "custody_identity_revocation_seconds"
	fams := mgr.metrics(t)
	for count(fams[rev]) < count(fams[reg]) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		fams = mgr.metrics(t)
	}
	regSum, _ := sumBy(fams[reg], "")
	revSum, _ := sumBy(fams[rev], "")
	errs, _ := sumBy(fams["custody_spire_api_errors_total"], "")
	report := fmt.Sprintf(`| workflows x steps (identity on, pods run %s) | %d x %d |
| Custody: wall time to all Succeeded | %s (%.1f steps/s) |
| attempts registered / revoked | %.0f / %.0f |
| registration latency (pod on node observed -> entry created) p50 / p99 | %s / %s |
| revocation latency (attempt end observed -> entry deleted) p50 / p99 | %s / %s |
| mean registration / revocation latency | %s / %s |
| SPIRE API errors | %.0f |
| controller peak RSS (VmHWM) / CPU time | %s / %s |
`, runTime, n, m, wall.Round(100*time.Millisecond), float64(n*m)/wall.Seconds(),
		count(fams[reg]), count(fams[rev]),
		quantile(fams[reg], 0.5), quantile(fams[reg], 0.99), quantile(fams[rev], 0.5), quantile(fams[rev], 0.99),
		seconds(regSum[""]/max(count(fams[reg]), 1)), seconds(revSum[""]/max(count(fams[rev]), 1)),
		errs[""], mgr.peakRSS(t), mgr.cpuTime(t))
	for _, ctl := range []string{"custody-identity", "custody-workflow"} {
		rc, reconcileMs, queuedMs := reconcileStats(fams, ctl)
		report += fmt.Sprintf("| %s: reconciles / mean reconcile time / mean time queued | %.0f / %.1f ms / %.1f ms |\n",
			ctl, rc, reconcileMs, queuedMs)
	}
	entries, err := spiretestEntries(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	report += fmt.Sprintf("| SPIRE entries left after the run | %d |\n", entries)
	t.Logf("results:\n%s", report)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // a path the developer chose
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		if _, err := f.WriteString("\n" + report); err != nil {
			t.Fatal(err)
		}
	}
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
}

// spiretestEntries counts the entries with Custody's default prefix in the server.
func spiretestEntries(ctx context.Context, srv *spiretest.Server) (int, error) {
	reg, err := spire.Dial(ctx, spire.Options{Address: srv.Address})
	if err != nil {
		return 0, err
	}
	defer func() { _ = reg.Close() }()
	entries, err := reg.List(ctx, identity.DefaultEntryIDPrefix)
	return len(entries), err
}

func namespace(ctx context.Context, t *testing.T, c *localcluster.Cluster, name string) {
	t.Helper()
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// runBaseline is the minimal driver: it creates the first Job of every chain at once, then, as
// each Job completes (seen on a watch, as a controller would), the next Job of its chain, from as
// many workers as the manager has (BENCH_CONCURRENCY).
func runBaseline(ctx context.Context, t *testing.T, c *localcluster.Cluster, n, m int) time.Duration {
	const ns = "bench-baseline"
	namespace(ctx, t, c, ns)
	job := func(chain, step int) *batchv1.Job {
		wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("chain-%d", chain), Namespace: ns,
			UID: "00000000-0000-0000-0000-000000000000"}}
		j := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: &custodyv1alpha1.Step{Name: fmt.Sprintf("s%d", step),
			Image: "registry.example.com/bench:1"}, Number: 1})
		j.OwnerReferences = nil
		j.Spec.Template.Spec.ServiceAccountName = ""
		j.Labels["bench/chain"], j.Labels["bench/step"] = strconv.Itoa(chain), strconv.Itoa(step)
		return j
	}
	next := make(chan *batchv1.Job, n*m)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	for range envInt("BENCH_CONCURRENCY", 8) {
		g.Go(func() error {
			for j := range next {
				if err := c.Client.Create(gctx, j); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Errorf("creating Job %s: %v", j.Name, err)
					cancel() // stops the watch: this Job will never complete
					return err
				}
			}
			return nil
		})
	}
	complete := map[string]bool{}
	elapsed := watchUntil(ctx, t, c, ns, &batchv1.JobList{}, func() error {
		firsts := make([]client.Object, n)
		for i := range n {
			firsts[i] = job(i, 0)
		}
		return createAll(ctx, t, c, "baseline: first Jobs", firsts)
	}, func(o client.Object) bool {
		j := o.(*batchv1.Job)
		if complete[j.Name] || !jobCondition(j, batchv1.JobComplete) {
			return false
		}
		complete[j.Name] = true
		chain, _ := strconv.Atoi(j.Labels["bench/chain"])
		step, _ := strconv.Atoi(j.Labels["bench/step"])
		if step+1 < m {
			next <- job(chain, step+1)
		}
		return len(complete) == n*m
	})
	close(next)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return elapsed
}

// watchUntil watches the objects of one kind in ns, runs start (creating the work), and passes
// every object it sees to handle until handle returns true; it returns the time from start to
// then. Watching instead of polling keeps the bench's own reads out of the measurement.
func watchUntil(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string, list client.ObjectList,
	start func() error, handle func(client.Object) bool) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	wc, rv := listForWatch(ctx, t, c, ns, list)
	begin := time.Now()
	go func() {
		if err := start(); err != nil {
			t.Errorf("creating the work: %v", err)
			cancel()
		}
	}()
	if err := watchEach(ctx, wc, ns, list, rv, handle); err != nil {
		t.Fatalf("%s: not done: %v", ns, err)
	}
	return time.Since(begin)
}

// listForWatch lists the objects of list's kind in ns and returns a watching client and the
// list's resource version, to watch from.
func listForWatch(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string, list client.ObjectList) (client.WithWatch, string) {
	t.Helper()
	wc, err := client.NewWithWatch(c.RestConfig(), client.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return wc, list.(metav1.ListInterface).GetResourceVersion()
}

// watchEach watches the objects of list's kind in ns from resource version rv, watching again
// when the server ends a watch, and passes each added or changed object to handle until handle
// returns true (nil) or ctx ends (its error). A watch error, e.g. 410 Gone, is returned: the
// watch cannot resume without missing events.
func watchEach(ctx context.Context, wc client.WithWatch, ns string, list client.ObjectList, rv string,
	handle func(client.Object) bool) error {
	for {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				w.Stop()
				if err := ctx.Err(); err != nil {
					return err
				}
				return apierrors.FromObject(ev.Object)
			}
			o, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			rv = o.GetResourceVersion()
			if ev.Type != watch.Deleted && handle(o) {
				w.Stop()
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// jobCondition says whether the Job has condition c set to True.
func jobCondition(j *batchv1.Job, c batchv1.JobConditionType) bool {
	for _, cond := range j.Status.Conditions {
		if cond.Type == c && cond.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// createAll creates objs "at once": from BENCH_CREATORS (default 16) clients in parallel, as many
// users or a GitOps sync would, so that neither phase waits on one client's round trips.
// It logs how long that took under what.
func createAll(ctx context.Context, t *testing.T, c *localcluster.Cluster, what string, objs []client.Object) error {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(envInt("BENCH_CREATORS", 16))
	for _, o := range objs {
		g.Go(func() error { return c.Client.Create(gctx, o) })
	}
	err := g.Wait()
	t.Logf("%s: created %d in %s", what, len(objs), time.Since(start).Round(10*time.Millisecond))
	return err
}

// runCustody creates every workflow at once and returns when all Succeeded.
func runCustody(ctx context.Context, t *testing.T, c *localcluster.Cluster, n, m int) time.Duration {
	const ns = "bench-custody"
	namespace(ctx, t, c, ns)
	wfs := make([]client.Object, n)
	for i := range n {
		wfs[i] = benchWorkflow(ns, fmt.Sprintf("chain-%d", i), m)
	}
	succeeded := map[string]bool{}
	return watchUntil(ctx, t, c, ns, &custodyv1alpha1.WorkflowList{}, func() error {
		return createAll(ctx, t, c, "custody: Workflows", wfs)
	}, func(o client.Object) bool {
		wf := o.(*custodyv1alpha1.Workflow)
		switch wf.Status.Phase {
		case custodyv1alpha1.WorkflowSucceeded:
			succeeded[wf.Name] = true
		case custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
			t.Errorf("workflow %s ended %s", wf.Name, wf.Status.Phase)
			return true
		}
		return len(succeeded) == n
	})
}

// jobTimings returns, over all Jobs in ns, the mean time from a Job's creation to its completion
// (object timestamps: one-second resolution, the mean is over hundreds of Jobs), when the first
// Job was created, when the last completed, and when the last first step's Job was created.
func jobTimings(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) (run float64, first, last, firstSteps time.Time) {
	var list batchv1.JobList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var runs []float64
	for i := range list.Items {
		j := &list.Items[i]
		if first.IsZero() || j.CreationTimestamp.Before(&metav1.Time{Time: first}) {
			first = j.CreationTimestamp.Time
		}
		if keyOf(j).step == 0 && j.CreationTimestamp.After(firstSteps) {
			firstSteps = j.CreationTimestamp.Time
		}
		if j.Status.CompletionTime != nil {
			if j.Status.CompletionTime.After(last) {
				last = j.Status.CompletionTime.Time
			}
			runs = append(runs, j.Status.CompletionTime.Sub(j.CreationTimestamp.Time).Seconds())
		}
	}
	return mean(runs), first, last, firstSteps
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func countEvents(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) int {
	var list eventsv1.EventList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, e := range list.Items {
		if e.Regarding.Kind == "Workflow" {
			count++
		}
	}
	return count
}

type manager struct {
	pid         int
	metricsAddr string
}

// startManager runs the manager binary with plain-HTTP metrics on loopback, so the benchmark can
// read client-go's request counters.
func startManager(t *testing.T, c *localcluster.Cluster, args ...string) *manager {
	t.Helper()
	metricsAddr, probeAddr := freeAddr(t), freeAddr(t)
	pid, err := c.StartManager(append([]string{"--metrics-secure=false", "--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + probeAddr,
		"--workflow-concurrency=" + strconv.Itoa(envInt("BENCH_CONCURRENCY", 8))}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &manager{pid: pid, metricsAddr: metricsAddr}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
			_ = resp.Body.Close()
			return mgr
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the manager's metrics endpoint did not come up")
	return nil
}

// mutatingRequests sums client-go's rest_client_requests_total for POST, PUT, PATCH and DELETE.
func (m *manager) mutatingRequests(t *testing.T) float64 {
	t.Helper()
	total := 0.0
	for verb, n := range m.requestsByVerb(t) {
		if writeVerbs[verb] {
			total += n
		}
	}
	return total
}

// parseMetrics parses a Prometheus text exposition.
func parseMetrics(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return families
}

// sumBy adds the values (counter, or histogram sum and count) of a metric's series by one label;
// with label "" every series is added under "".
func sumBy(f *dto.MetricFamily, label string) (sums, counts map[string]float64) {
	sums, counts = map[string]float64{}, map[string]float64{}
	for _, metric := range f.GetMetric() {
		key, found := "", label == ""
		for _, l := range metric.GetLabel() {
			if l.GetName() == label {
				key, found = l.GetValue(), true
			}
		}
		if !found {
			continue
		}
		if h := metric.GetHistogram(); h != nil {
			sums[key] += h.GetSampleSum()
			counts[key] += float64(h.GetSampleCount())
		} else {
			sums[key] += metric.GetCounter().GetValue()
		}
	}
	return sums, counts
}

// count is a histogram's number of observations, over all its series.
func count(f *dto.MetricFamily) float64 {
	_, counts := sumBy(f, "")
	return counts[""]
}

// reconcileStats is what controller-runtime recorded of one controller: its reconciles, their mean
// duration, and the mean time a request waited in its work queue (ms).
func reconcileStats(fams map[string]*dto.MetricFamily, controller string) (reconciles, reconcileMs, queuedMs float64) {
	sums, counts := sumBy(fams["controller_runtime_reconcile_time_seconds"], "controller")
	qSums, qCounts := sumBy(fams["workqueue_queue_duration_seconds"], "name")
	reconciles = counts[controller]
	return reconciles, 1000 * sums[controller] / max(reconciles, 1), 1000 * qSums[controller] / max(qCounts[controller], 1)
}

// quantile estimates the q-quantile of a histogram (its series added up) as Prometheus's
// histogram_quantile does: linear interpolation inside the bucket that holds it.
func quantile(f *dto.MetricFamily, q float64) string {
	cumulative := map[float64]float64{}
	for _, metric := range f.GetMetric() {
		h := metric.GetHistogram()
		inf := false
		for _, b := range h.GetBucket() {
			cumulative[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf { // the +Inf bucket is implicit: every observation
			cumulative[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	bounds := make([]float64, 0, len(cumulative))
	for le := range cumulative {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	all := cumulative[math.Inf(1)]
	if all == 0 {
		return "n/a"
	}
	rank := q * all
	prevLe, prevCount := 0.0, 0.0
	for _, le := range bounds {
		if count := cumulative[le]; count >= rank {
			if math.IsInf(le, 1) {
				return fmt.Sprintf("> %s", seconds(prevLe))
			}
			return seconds(prevLe + (le-prevLe)*(rank-prevCount)/max(count-prevCount, 1))
		}
		prevLe, prevCount = le, cumulative[le]
	}
	return "n/a"
}

// apiserverRaw is a client for kube-apiserver's own paths (/metrics, /debug/pprof/).
func apiserverRaw(c *localcluster.Cluster) (*rest.RESTClient, error) {
	cfg := c.RestConfig()
	cfg.GroupVersion = &schema.GroupVersion{}
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	cfg.Timeout = time.Minute
	return rest.RESTClientFor(cfg)
}

// metrics reads and parses the manager's metrics.
func (m *manager) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	return parseMetrics(t, []byte(m.scrape(t)))
}

// requestsByVerb sums client-go's rest_client_requests_total by method, for the record.
func (m *manager) requestsByVerb(t *testing.T) map[string]float64 {
	t.Helper()
	byVerb, _ := sumBy(m.metrics(t)["rest_client_requests_total"], "method")
	return byVerb
}

// consistencyWaits sums controller-runtime's controller_runtime_client_consistency_wait_duration_seconds
// by operation: how long the manager's cache reads waited to see its own earlier writes
// (read-your-writes consistency).
func (m *manager) consistencyWaits(t *testing.T) string {
	t.Helper()
	sum, count := sumBy(m.metrics(t)["controller_runtime_client_consistency_wait_duration_seconds"], "operation")
	parts := make([]string, 0, len(count))
	for op, n := range count {
		parts = append(parts, fmt.Sprintf("%s: %.0f reads waited %.1f s in all (mean %.1f ms)", op, n, sum[op], 1000*sum[op]/max(n, 1)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// scrape returns the manager's metrics text.
func (m *manager) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics") //nolint:gosec // the loopback address this test chose
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// peakRSS reads the manager's high-water resident set size from /proc.
func (m *manager) peakRSS(t *testing.T) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid)) //nolint:gosec // the manager this test started
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

// cpuTime reads the manager's user and system CPU time from /proc (in clock ticks of 1/100 s).
func (m *manager) cpuTime(t *testing.T) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid)) //nolint:gosec // the manager this test started
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which is in parentheses): utime is field 14, stime 15.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func freeAddr(t *testing.T) string {
	addr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// writeVerbs are the apiserver_request_total verbs that change something.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// clusterWrites returns kube-apiserver's count of mutating requests so far, from every client
// (apiserver_request_total), by resource and subresource ("pods/status").
func clusterWrites(ctx context.Context, t *testing.T, c *localcluster.Cluster) map[string]float64 {
	t.Helper()
	rc, err := apiserverRaw(c)
	if err != nil {
		t.Fatal(err)
	}
	data, err := rc.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("apiserver metrics: %v", err)
	}
	out := map[string]float64{}
	f, ok := parseMetrics(t, data)["apiserver_request_total"]
	if !ok {
		t.Fatal("apiserver metrics: no apiserver_request_total")
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !writeVerbs[labels["verb"]] {
			continue
		}
		resource := labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			resource += "/" + sub
		}
		out[resource] += m.GetCounter().GetValue()
	}
	return out
}

// writesPerStep is what the cluster wrote between two clusterWrites readings: the total per step,
// and the resources that took the most, largest first ("jobs/status 3.00").
func writesPerStep(before, after map[string]float64, steps float64) (float64, string) {
	type row struct {
		resource string
		n        float64
	}
	var rows []row
	total := 0.0
	for r, n := range after {
		if d := n - before[r]; d > 0 {
			rows = append(rows, row{r, d})
			total += d
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].n > rows[j].n })
	var parts []string
	for _, r := range rows {
		if r.n/steps < 0.05 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", r.resource, r.n/steps))
	}
	return total / steps, strings.Join(parts, ", ")
}

// clusterCPU is the CPU time (user and system) used so far by every process this test started:
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler, KWOK and the manager. On a shared
// machine it varies less than wall time: it is what the work cost, whoever else ran meanwhile.
func clusterCPU(t *testing.T) cpuTimes {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent, ticks, names := map[int]int{}, map[int]int64{}, map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// The command name (field 2) may hold spaces; the fields after it are numbers.
		head, tail, ok := strings.Cut(string(data), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(tail) // f[0] is field 3 (state)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		_, name, _ := strings.Cut(head, "(")
		parent[pid], ticks[pid], names[pid] = ppid, utime+stime, name
	}
	self := os.Getpid()
	out := cpuTimes{}
	for pid := range ticks {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == self {
				out[names[pid]] += time.Duration(ticks[pid]) * time.Second / 100 // USER_HZ is 100 on Linux
				break
			}
		}
	}
	return out
}

// cpuTimes is CPU time by process name.
type cpuTimes map[string]time.Duration

func (c cpuTimes) total() time.Duration {
	var t time.Duration
	for _, d := range c {
		t += d
	}
	return t
}

// perStep prints, largest first, what each process used between two readings, per step.
func (c cpuTimes) perStep(before cpuTimes, steps float64) string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return c[names[i]]-before[names[i]] > c[names[j]]-before[names[j]] })
	var parts []string
	for _, n := range names {
		if d := c[n] - before[n]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", n, float64(d.Microseconds())/1000/steps))
		}
	}
	return strings.Join(parts, ", ")
}

// profileAPIServer starts a 15 s CPU profile of kube-apiserver when BENCH_APISERVER_PROFILE names a
// path, and writes it to the path with suffix appended (one file a phase; go tool pprof -top
// <file>). The returned func waits for it and reports a failure; without the variable it returns at
// once.
func profileAPIServer(ctx context.Context, t *testing.T, c *localcluster.Cluster, suffix string) func() {
	t.Helper()
	path := os.Getenv("BENCH_APISERVER_PROFILE")
	if path == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel) // a phase that failed does not wait for its profile
	done := make(chan error, 1)
	go func() {
		rc, err := apiserverRaw(c)
		if err != nil {
			done <- err
			return
		}
		data, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", "15").DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(path+suffix, data, 0o600) //nolint:gosec // a path the developer chose
		}
		done <- err
	}()
	return func() {
		t.Helper()
		if err := <-done; err != nil {
			t.Errorf("kube-apiserver profile %s: %v", path+suffix, err)
		}
	}
}
