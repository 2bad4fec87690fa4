// Package bench measures Custody's throughput on a local cluster (internal/localcluster) against a
// baseline of the same DAGs run as bare Jobs by a minimal driver. It is a measurement, not a test:
// it runs only under `make bench` (CUSTODY_BENCH=1) and asserts nothing about speed; it prints the
// numbers that docs/benchmarks.md records with the machine and the method.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	c, err := localcluster.Start(localcluster.Options{Nodes: 4, Dir: os.Getenv("CUSTODY_E2E_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx := context.Background()

	baseline := runBaseline(ctx, t, c, n, m)
	t.Logf("baseline: %d chains x %d Jobs in %s (%.1f steps/s)", n, m, baseline, float64(n*m)/baseline.Seconds())

	mgr := startManager(t, c)
	before := mgr.mutatingRequests(t)
	profiled := make(chan struct{})
	if path := os.Getenv("BENCH_APISERVER_PROFILE"); path != "" {
		// A CPU profile of kube-apiserver during the Custody phase: go tool pprof -top <path>.
		go func() {
			defer close(profiled)
			rc, err := rest.RESTClientFor(restConfigForRaw(c))
			if err != nil {
				t.Error(err)
				return
			}
			data, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", "15").DoRaw(ctx)
			if err != nil {
				t.Errorf("apiserver profile: %v", err)
				return
			}
			_ = os.WriteFile(path, data, 0o600) //nolint:gosec // a path the developer chose
		}()
	} else {
		close(profiled)
	}
	custody := runCustody(ctx, t, c, n, m)
	<-profiled
	after := mgr.mutatingRequests(t)
	events := countEvents(ctx, t, c, "bench-custody")
	rss := mgr.peakRSS(t)
	reconciles, reconcileSum := mgr.metric(t, `controller_runtime_reconcile_time_seconds_count{controller="custody-workflow"}`),
		mgr.metric(t, `controller_runtime_reconcile_time_seconds_sum{controller="custody-workflow"}`)
	queued, queueSum := mgr.metric(t, `workqueue_queue_duration_seconds_count{controller="custody-workflow",name="custody-workflow"}`),
		mgr.metric(t, `workqueue_queue_duration_seconds_sum{controller="custody-workflow",name="custody-workflow"}`)
	cpu := mgr.cpuTime(t)

	steps := float64(n * m)
	mutating := after - before
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
`, n, m, baseline.Round(100*time.Millisecond), steps/baseline.Seconds(),
		custody.Round(100*time.Millisecond), steps/custody.Seconds(), baseline.Seconds()/custody.Seconds(),
		mutating, mutating/steps, events, float64(events)/steps, (mutating-float64(events))/steps, rss, cpu,
		reconciles, 1000*reconcileSum/max(reconciles, 1), 1000*queueSum/max(queued, 1))
	for _, ns := range []string{"bench-baseline", "bench-custody"} {
		gap, run, first, last, firstSteps := jobTimings(ctx, t, c, ns)
		report += fmt.Sprintf("| %s: mean Job run (created to complete) / mean gap (previous step complete to next Job created) | %.2fs / %.2fs |\n",
			ns, run, gap)
		report += fmt.Sprintf("| %s: first Job created to last Job complete | %s; all first steps' Jobs created within %s |\n",
			ns, last.Sub(first), firstSteps.Sub(first))
	}
	t.Logf("controller requests by verb (whole run): %v", mgr.requestsByVerb(t))
	t.Logf("results:\n%s", report)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o600); err != nil { //nolint:gosec // a path the developer chose
			t.Fatal(err)
		}
	}
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
	for mgr.metric(t, "custody_identity_revocation_seconds_count") < mgr.metric(t, "custody_identity_registration_seconds_count") &&
		time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	const reg, rev = "custody_identity_registration_seconds", "custody_identity_revocation_seconds"
	report := fmt.Sprintf(`| workflows x steps (identity on, pods run %s) | %d x %d |
| Custody: wall time to all Succeeded | %s (%.1f steps/s) |
| attempts registered / revoked | %.0f / %.0f |
| registration latency (pod on node observed -> entry created) p50 / p99 | %s / %s |
| revocation latency (attempt end observed -> entry deleted) p50 / p99 | %s / %s |
| mean registration / revocation latency | %s / %s |
| SPIRE API errors | %.0f |
| controller peak RSS (VmHWM) / CPU time | %s / %s |
`, runTime, n, m, wall.Round(100*time.Millisecond), float64(n*m)/wall.Seconds(),
		mgr.metric(t, reg+"_count"), mgr.metric(t, rev+"_count"),
		mgr.quantile(t, reg, 0.5), mgr.quantile(t, reg, 0.99), mgr.quantile(t, rev, 0.5), mgr.quantile(t, rev, 0.99),
		seconds(mgr.metric(t, reg+"_sum")/max(mgr.metric(t, reg+"_count"), 1)),
		seconds(mgr.metric(t, rev+"_sum")/max(mgr.metric(t, rev+"_count"), 1)),
		mgr.sum(t, "custody_spire_api_errors_total"), mgr.peakRSS(t), mgr.cpuTime(t))
	for _, ctl := range []string{"custody-identity", "custody-workflow"} {
		q, qs := mgr.metric(t, `workqueue_queue_duration_seconds_count{controller="`+ctl+`",name="`+ctl+`"}`),
			mgr.metric(t, `workqueue_queue_duration_seconds_sum{controller="`+ctl+`",name="`+ctl+`"}`)
		rc, rs := mgr.metric(t, `controller_runtime_reconcile_time_seconds_count{controller="`+ctl+`"}`),
			mgr.metric(t, `controller_runtime_reconcile_time_seconds_sum{controller="`+ctl+`"}`)
		report += fmt.Sprintf("| %s: reconciles / mean reconcile time / mean time queued | %.0f / %.1f ms / %.1f ms |\n",
			ctl, rc, 1000*rs/max(rc, 1), 1000*qs/max(q, 1))
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
// Jobs complete, the next Job of the chain, polling like a simple controller would.
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
	start := time.Now()
	for i := range n {
		if err := c.Client.Create(ctx, job(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("baseline: created %d first Jobs in %s", n, time.Since(start).Round(10*time.Millisecond))
	created := map[string]bool{}
	for {
		var list batchv1.JobList
		if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		complete := 0
		for _, j := range list.Items {
			created[j.Name] = true
			done := false
			for _, cond := range j.Status.Conditions {
				done = done || (cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue)
			}
			if !done {
				continue
			}
			complete++
			chain, _ := strconv.Atoi(j.Labels["bench/chain"])
			step, _ := strconv.Atoi(j.Labels["bench/step"])
			if step+1 < m {
				next := job(chain, step+1)
				if !created[next.Name] {
					if err := c.Client.Create(ctx, next); err != nil && !apierrors.IsAlreadyExists(err) {
						t.Fatal(err)
					}
					created[next.Name] = true
				}
			}
		}
		if complete == n*m {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Minute {
			t.Fatalf("baseline: %d of %d Jobs complete after 30m", complete, n*m)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runCustody creates every workflow at once and waits until all Succeeded.
func runCustody(ctx context.Context, t *testing.T, c *localcluster.Cluster, n, m int) time.Duration {
	const ns = "bench-custody"
	namespace(ctx, t, c, ns)
	start := time.Now()
	for i := range n {
		wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("chain-%d", i), Namespace: ns}}
		for k := range m {
			st := custodyv1alpha1.Step{Name: fmt.Sprintf("s%d", k), Image: "registry.example.com/bench:1"}
			if k > 0 {
				st.DependsOn = []string{fmt.Sprintf("s%d", k-1)}
			}
			wf.Spec.Steps = append(wf.Spec.Steps, st)
		}
		if err := c.Client.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("custody: created %d workflows in %s", n, time.Since(start).Round(10*time.Millisecond))
	for {
		var list custodyv1alpha1.WorkflowList
		if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, wf := range list.Items {
			switch wf.Status.Phase {
			case custodyv1alpha1.WorkflowSucceeded:
				done++
			case custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
				t.Fatalf("workflow %s ended %s", wf.Name, wf.Status.Phase)
			}
		}
		if done == n {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Minute {
			t.Fatalf("custody: %d of %d workflows Succeeded after 30m", done, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// jobTimings returns, over all Jobs in ns, the mean time from a Job's creation to its completion,
// and the mean time from a step's completion to the creation of the next step's Job (timestamps
// have one-second resolution; the means are over hundreds of Jobs).
func jobTimings(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) (gap, run float64, first, last, firstSteps time.Time) {
	var list batchv1.JobList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	type key struct {
		chain string
		step  int
	}
	byKey := map[key]batchv1.Job{}
	for _, j := range list.Items {
		chain := j.Labels["bench/chain"] + j.Labels[custodyv1alpha1.LabelWorkflow]
		step, _ := strconv.Atoi(strings.TrimPrefix(j.Labels[custodyv1alpha1.LabelStep], "s"))
		byKey[key{chain, step}] = j
	}
	var gaps, runs []float64
	for k, j := range byKey {
		if first.IsZero() || j.CreationTimestamp.Before(&metav1.Time{Time: first}) {
			first = j.CreationTimestamp.Time
		}
		if k.step == 0 && j.CreationTimestamp.After(firstSteps) {
			firstSteps = j.CreationTimestamp.Time
		}
		if j.Status.CompletionTime != nil && j.Status.CompletionTime.After(last) {
			last = j.Status.CompletionTime.Time
		}
		if j.Status.CompletionTime != nil {
			runs = append(runs, j.Status.CompletionTime.Sub(j.CreationTimestamp.Time).Seconds())
		}
		if prev, ok := byKey[key{k.chain, k.step - 1}]; ok && prev.Status.CompletionTime != nil {
			gaps = append(gaps, j.CreationTimestamp.Sub(prev.Status.CompletionTime.Time).Seconds())
		}
	}
	return mean(gaps), mean(runs), first, last, firstSteps
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
	sc := bufio.NewScanner(strings.NewReader(m.scrape(t)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			if strings.Contains(line, `method="`+verb+`"`) {
				fields := strings.Fields(line)
				v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
				total += v
			}
		}
	}
	return total
}

func restConfigForRaw(c *localcluster.Cluster) *rest.Config {
	cfg := c.RestConfig()
	cfg.GroupVersion = &schema.GroupVersion{}
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	cfg.Timeout = time.Minute
	return cfg
}

// metric returns the value of one exact series (name and labels as printed) from the manager.
func (m *manager) metric(t *testing.T, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(m.scrape(t), "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return v
		}
	}
	return 0
}

// requestsByVerb sums client-go's rest_client_requests_total by method, for the record.
func (m *manager) requestsByVerb(t *testing.T) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(m.scrape(t), "\n") {
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		_, tail, ok := strings.Cut(line, `method="`)
		if !ok {
			continue
		}
		verb, _, _ := strings.Cut(tail, `"`)
		fields := strings.Fields(line)
		v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
		out[verb] += v
	}
	return out
}

// scrape returns the manager's metrics text.
func (m *manager) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// sum adds every series of a metric.
func (m *manager) sum(t *testing.T, name string) float64 {
	total := 0.0
	for _, line := range strings.Split(m.scrape(t), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			fields := strings.Fields(line)
			v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			total += v
		}
	}
	return total
}

// quantile estimates the q-quantile of a histogram as Prometheus's histogram_quantile does:
// linear interpolation inside the bucket that holds it.
func (m *manager) quantile(t *testing.T, name string, q float64) string {
	type bucket struct{ le, count float64 }
	var buckets []bucket
	for _, line := range strings.Split(m.scrape(t), "\n") {
		bucketText, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, countText, _ := strings.Cut(bucketText, `"} `)
		bound, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err = math.Inf(1), nil
		}
		count, err2 := strconv.ParseFloat(strings.TrimSpace(countText), 64)
		if err != nil || err2 != nil {
			t.Fatalf("parsing %q", line)
		}
		buckets = append(buckets, bucket{bound, count})
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return "n/a"
	}
	rank := q * buckets[len(buckets)-1].count
	prevLe, prevCount := 0.0, 0.0
	for _, b := range buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return fmt.Sprintf("> %s", seconds(prevLe))
			}
			return seconds(prevLe + (b.le-prevLe)*(rank-prevCount)/max(b.count-prevCount, 1))
		}
		prevLe, prevCount = b.le, b.count
	}
	return "n/a"
}

// peakRSS reads the manager's high-water resident set size from /proc.
func (m *manager) peakRSS(t *testing.T) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
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
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid))
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
