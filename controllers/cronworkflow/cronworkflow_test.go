package cronworkflow

// These tests run the reconciler against a real kube-apiserver (envtest) with a fake clock, and
// play the Workflow controller by writing the runs' status: schedules fire when the clock says so,
// not when a test machine gets round to it.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/cronschedule"
	"github.com/custody-dev/custody/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// harness is one CronWorkflow, its reconciler and its clock.
type harness struct {
	t        *testing.T
	cw       *custodyv1alpha1.CronWorkflow
	clock    *clocktesting.FakeClock
	r        *Reconciler
	recorder *events.FakeRecorder
}

func newHarness(t *testing.T, manifest string) *harness {
	t.Helper()
	ns := env.Namespace(t)
	cw := &custodyv1alpha1.CronWorkflow{}
	if err := yaml.UnmarshalStrict([]byte(manifest), cw); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	cw.Namespace = ns
	if err := env.Client.Create(ctxT(t), cw); err != nil {
		t.Fatalf("creating CronWorkflow: %v", err)
	}
	h := &harness{t: t, cw: cw, clock: clocktesting.NewFakeClock(cw.CreationTimestamp.Time)}
	h.restart()
	return h
}

// restart replaces the reconciler with a new one (what a controller restart does: no memory).
func (h *harness) restart() {
	h.recorder = events.NewFakeRecorder(100)
	h.r = &Reconciler{Client: env.Client, Recorder: h.recorder, Clock: h.clock}
}

func (h *harness) reconcile() ctrl.Result {
	h.t.Helper()
	res, err := h.r.Reconcile(ctxT(h.t), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(h.cw)})
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	return res
}

// tick moves the clock to the next scheduled time (plus a second) and reconciles.
func (h *harness) tick() time.Time {
	h.t.Helper()
	next := h.get().Status.NextScheduleTime
	if next == nil {
		h.reconcile() // first sight of the CronWorkflow
		if next = h.get().Status.NextScheduleTime; next == nil {
			h.t.Fatalf("no nextScheduleTime: %+v", h.get().Status)
		}
	}
	h.clock.SetTime(next.Add(time.Second))
	h.reconcile()
	return next.Time
}

func (h *harness) get() *custodyv1alpha1.CronWorkflow {
	h.t.Helper()
	cur := &custodyv1alpha1.CronWorkflow{}
	if err := env.Client.Get(ctxT(h.t), client.ObjectKeyFromObject(h.cw), cur); err != nil {
		h.t.Fatal(err)
	}
	return cur
}

// runs lists the Workflows in the namespace, oldest scheduled first.
func (h *harness) runs() []custodyv1alpha1.Workflow {
	h.t.Helper()
	var list custodyv1alpha1.WorkflowList
	if err := env.Client.List(ctxT(h.t), &list, client.InNamespace(h.cw.Namespace)); err != nil {
		h.t.Fatal(err)
	}
	out := list.Items
	sort.Slice(out, func(i, j int) bool { return out[i].ScheduledTime().Before(out[j].ScheduledTime()) })
	return out
}

func (h *harness) names() []string {
	runs := h.runs()
	out := make([]string, 0, len(runs))
	for _, r := range runs {
		out = append(out, r.Name)
	}
	return out
}

// finish writes a run's status as the Workflow controller would when it ends.
func (h *harness) finish(name string, phase custodyv1alpha1.WorkflowPhase) {
	h.t.Helper()
	wf := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctxT(h.t), client.ObjectKey{Namespace: h.cw.Namespace, Name: name}, wf); err != nil {
		h.t.Fatal(err)
	}
	wf.Status.Phase = phase
	wf.Status.CompletionTime = &metav1.Time{Time: h.clock.Now()}
	if err := env.Client.Status().Update(ctxT(h.t), wf); err != nil {
		h.t.Fatal(err)
	}
}

// events drains the recorded Events into one string.
func (h *harness) events() string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

const inline = `
spec:
  schedule: "*/5 * * * *"
  workflowSpec:
    steps: [{name: report, image: example.com/report:1}]
`

// TestCronWorkflow_firesOncePerScheduledTime: nothing before the time; at the time exactly one
// run with the deterministic name, owner, labels and annotation; reconciling again, or after a
// restart, or after the status write was lost, makes no second run.
func TestCronWorkflow_firesOncePerScheduledTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "metadata: {name: nightly}"+inline)
	res := h.reconcile()
	cw := h.get()
	if len(h.runs()) != 0 {
		t.Fatalf("runs before the first scheduled time: %v", h.names())
	}
	if cw.Status.NextScheduleTime == nil || res.RequeueAfter <= 0 || res.RequeueAfter > 5*time.Minute {
		t.Errorf("requeueAfter %s, nextScheduleTime %v; want a wake-up at the next time, within 5m", res.RequeueAfter, cw.Status.NextScheduleTime)
	}
	if got := kstatusOf(t, cw); got != status.CurrentStatus {
		t.Errorf("kstatus = %s, want Current for a scheduling CronWorkflow", got)
	}

	due := h.tick()
	want := cronschedule.RunName("nightly", due)
	h.reconcile()
	h.restart()
	h.reconcile()
	runs := h.runs()
	if len(runs) != 1 || runs[0].Name != want {
		t.Fatalf("runs = %v, want exactly [%s]", h.names(), want)
	}
	run := runs[0]
	if !metav1.IsControlledBy(&run, h.get()) || run.Labels[custodyv1alpha1.LabelCronWorkflow] != "nightly" ||
		run.Annotations[custodyv1alpha1.AnnotationScheduledTime] != due.UTC().Format(time.RFC3339) {
		t.Errorf("run metadata: owners %v, labels %v, annotations %v", run.OwnerReferences, run.Labels, run.Annotations)
	}
	if len(run.Spec.Steps) != 1 || run.Spec.Steps[0].Image != "example.com/report:1" {
		t.Errorf("run spec = %+v", run.Spec)
	}
	cw = h.get()
	if cw.Status.LastScheduleTime == nil || !cw.Status.LastScheduleTime.Time.Equal(due) || len(cw.Status.Active) != 1 {
		t.Errorf("status: lastScheduleTime %v, active %v", cw.Status.LastScheduleTime, cw.Status.Active)
	}

	// A status write lost (the controller crashed after creating the run): no second run.
	cw.Status.LastScheduleTime = nil
	if err := env.Client.Status().Update(ctxT(t), cw); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.reconcile()
	if got := h.names(); len(got) != 1 {
		t.Errorf("runs after a lost status write = %v, want one", got)
	}
	if ev := h.events(); strings.Contains(ev, custodyv1alpha1.ReasonRunCreated) {
		t.Errorf("the restarted controller reported creating a run again: %s", ev)
	}
	if got := h.get().Status.LastScheduleTime; got == nil || !got.Time.Equal(due) {
		t.Errorf("lastScheduleTime = %v, want it recorded again as %s", got, due)
	}

	// The run succeeds: recorded as the last successful run.
	h.finish(want, custodyv1alpha1.WorkflowSucceeded)
	h.reconcile()
	cw = h.get()
	if cw.Status.LastSuccessfulRun != want || cw.Status.LastSuccessfulTime == nil || len(cw.Status.Active) != 0 {
		t.Errorf("status after success: lastSuccessfulRun %q at %v, active %v", cw.Status.LastSuccessfulRun, cw.Status.LastSuccessfulTime, cw.Status.Active)
	}
}

// TestCronWorkflow_concurrencyPolicies: Allow runs alongside, Forbid skips while one runs,
// Replace cancels the running one.
func TestCronWorkflow_concurrencyPolicies(t *testing.T) {
	t.Parallel()
	t.Run("Allow", func(t *testing.T) {
		h := newHarness(t, "metadata: {name: allow}"+inline)
		h.tick()
		h.tick()
		cw := h.get()
		if n := len(h.runs()); n != 2 || len(cw.Status.Active) != 2 {
			t.Errorf("%d runs, %d active; want 2 running side by side", n, len(cw.Status.Active))
		}
	})
	t.Run("Forbid", func(t *testing.T) {
		h := newHarness(t, "metadata: {name: forbid}"+strings.Replace(inline, "spec:\n", "spec:\n  concurrencyPolicy: Forbid\n", 1))
		first := h.tick()
		skipped := h.tick()
		if got := h.names(); len(got) != 1 {
			t.Fatalf("runs = %v, want only the first while it runs", got)
		}
		if ev := h.events(); !strings.Contains(ev, custodyv1alpha1.ReasonRunSkipped) || !strings.Contains(ev, skipped.UTC().Format(time.RFC3339)) {
			t.Errorf("events = %q, want RunSkipped for %s", ev, skipped)
		}
		// The skipped time is not made up when the first run ends; the next time runs.
		h.finish(cronschedule.RunName("forbid", first), custodyv1alpha1.WorkflowFailed)
		h.reconcile()
		if got := h.names(); len(got) != 1 {
			t.Errorf("runs after the first ended = %v: the skipped time was made up", got)
		}
		third := h.tick()
		if got := h.names(); len(got) != 2 || got[1] != cronschedule.RunName("forbid", third) {
			t.Errorf("runs = %v, want the next scheduled time to run", got)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		h := newHarness(t, "metadata: {name: replace}"+strings.Replace(inline, "spec:\n", "spec:\n  concurrencyPolicy: Replace\n", 1))
		first := h.tick()
		second := h.tick()
		runs := h.runs()
		if len(runs) != 2 || runs[0].Name != cronschedule.RunName("replace", first) || runs[1].Name != cronschedule.RunName("replace", second) {
			t.Fatalf("runs = %v", h.names())
		}
		if !runs[0].Spec.Cancel || runs[1].Spec.Cancel {
			t.Errorf("cancel: first %v, second %v; want the first cancelled, the second running", runs[0].Spec.Cancel, runs[1].Spec.Cancel)
		}
		want := "The workflow was cancelled: CronWorkflow replace replaced it with " + runs[1].Name + " (concurrencyPolicy Replace)"
		if got := runs[0].Cancellation(); got != want {
			t.Errorf("the replaced run says %q, want %q", got, want)
		}
		if ev := h.events(); !strings.Contains(ev, custodyv1alpha1.ReasonRunReplaced) {
			t.Errorf("events = %q, want RunReplaced", ev)
		}
	})
}

// TestCronWorkflow_outageMakesAtMostOneRun: after three hours without the controller, one run (for
// the most recent time) and one MissedSchedule Event counting the rest; with a starting deadline
// that the most recent time has passed, none.
func TestCronWorkflow_outageMakesAtMostOneRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "metadata: {name: outage}"+inline)
	h.tick()
	h.finish(h.names()[0], custodyv1alpha1.WorkflowSucceeded)
	h.events()
	h.clock.Step(3 * time.Hour)
	h.reconcile()
	if got := h.names(); len(got) != 2 {
		t.Fatalf("runs after a 3h outage = %v, want the earlier one and one more", got)
	}
	if ev := h.events(); !strings.Contains(ev, "MissedSchedule Missed 35 scheduled runs") {
		t.Errorf("events = %q, want one MissedSchedule counting 35", ev)
	}

	d := newHarness(t, "metadata: {name: deadline}"+strings.Replace(inline, "spec:\n", "spec:\n  startingDeadlineSeconds: 60\n", 1))
	d.reconcile()
	next := d.get().Status.NextScheduleTime.Time
	d.clock.SetTime(next.Add(2 * time.Minute))
	d.reconcile()
	if got := d.names(); len(got) != 0 {
		t.Errorf("runs = %v, want none: the only due time is past the 60s deadline", got)
	}
	if ev := d.events(); !strings.Contains(ev, "more than startingDeadlineSeconds (60s) late") {
		t.Errorf("events = %q, want MissedSchedule for the deadline", ev)
	}
	// Handled once: the next reconcile does not report it again.
	d.reconcile()
	if ev := d.events(); ev != "" {
		t.Errorf("events on the next reconcile = %q, want none", ev)
	}

	// An outage past the deadline: one Event says both (two of the same reason in one pass
	// would fold into one, losing the second).
	o := newHarness(t, "metadata: {name: outage-deadline}"+strings.Replace(inline, "spec:\n", "spec:\n  startingDeadlineSeconds: 60\n", 1))
	o.reconcile()
	o.clock.SetTime(o.get().Status.NextScheduleTime.Add(3*time.Hour + 2*time.Minute)) // 2 min past a scheduled time
	o.reconcile()
	ev := o.events()
	if strings.Count(ev, custodyv1alpha1.ReasonMissedSchedule) != 1 || !strings.Contains(ev, "Missed 36 scheduled runs before") ||
		!strings.Contains(ev, "more than startingDeadlineSeconds (60s) late") {
		t.Errorf("events = %q, want one MissedSchedule saying both what the outage and the deadline missed", ev)
	}
}

// TestCronWorkflow_clockChanges: a nightly 02:30 in Europe/Berlin runs at 03:00 CEST on the night
// the clock skips 02:30 (the Event says why then), and once, not twice, on the night 02:30 comes
// round again.
func TestCronWorkflow_clockChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, `
metadata: {name: nightly-berlin}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlin
  workflowSpec:
    steps: [{name: backup, image: example.com/backup:1}]
`)
	// As if it had run every night so far: the last run was the night before the change.
	handled := func(last string) {
		t.Helper()
		cw := h.get()
		cw.Status.LastScheduleTime = &metav1.Time{Time: mustTime(t, last)}
		if err := env.Client.Status().Update(ctxT(t), cw); err != nil {
			t.Fatal(err)
		}
	}

	handled("2027-03-27T01:30:00Z") // 02:30 CET
	h.clock.SetTime(mustTime(t, "2027-03-28T00:59:00Z"))
	h.reconcile()
	if next := h.get().Status.NextScheduleTime; next == nil || !next.Time.Equal(mustTime(t, "2027-03-28T01:00:00Z")) {
		t.Fatalf("nextScheduleTime = %v, want 2027-03-28T01:00:00Z: 03:00 CEST, when the clock jumps over 02:30", next)
	}
	h.events()
	if due := h.tick(); len(h.runs()) != 1 || h.runs()[0].Name != cronschedule.RunName("nightly-berlin", due) {
		t.Fatalf("runs = %v, want one for %s", h.names(), due)
	}
	if ev := h.events(); !strings.Contains(ev, "for 2027-03-28T01:00:00Z (02:30 Europe/Berlin, a time the clock skipped when it went forward)") {
		t.Errorf("events = %q, want RunCreated saying which time of day the run stands for", ev)
	}
	if next := h.get().Status.NextScheduleTime; next == nil || !next.Time.Equal(mustTime(t, "2027-03-29T00:30:00Z")) {
		t.Errorf("nextScheduleTime = %v, want 02:30 CEST the next night", next)
	}

	handled("2027-10-30T00:30:00Z") // 02:30 CEST, the night before the clock goes back
	h.clock.SetTime(mustTime(t, "2027-10-31T00:00:00Z"))
	h.reconcile()
	first := h.tick()
	if !first.Equal(mustTime(t, "2027-10-31T00:30:00Z")) {
		t.Errorf("ran at %s, want 2027-10-31T00:30:00Z: the first 02:30", first)
	}
	if next := h.get().Status.NextScheduleTime; next == nil || !next.Time.Equal(mustTime(t, "2027-11-01T01:30:00Z")) {
		t.Errorf("nextScheduleTime = %v, want 2027-11-01T01:30:00Z: not the second 02:30 (01:30Z)", next)
	}
	h.clock.SetTime(mustTime(t, "2027-10-31T01:30:30Z")) // 02:30 CET, the second time
	h.reconcile()
	if got := h.names(); len(got) != 2 {
		t.Errorf("runs = %v, want two: the spring one and one on the night 02:30 came twice", got)
	}
}

// TestCronWorkflow_scheduleChange: a schedule changed to a time of day that has passed since the
// last run makes no run for it (Kubernetes CronJobs did, kubernetes#63371): the new schedule counts
// from the change, which an Event records.
func TestCronWorkflow_scheduleChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "metadata: {name: moved}"+strings.Replace(inline, `"*/5 * * * *"`, `"0 0 29 2 *"`, 1)) // no time in the next hours
	h.reconcile()
	created := h.clock.Now()
	h.clock.Step(2 * time.Hour)
	h.reconcile()
	h.events()

	passed := created.Add(time.Hour).Truncate(time.Minute) // a time of day between the creation and now
	cw := h.get()
	cw.Spec.Schedule = fmt.Sprintf("%d %d * * *", passed.Minute(), passed.Hour())
	if err := env.Client.Update(ctxT(t), cw); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	if got := h.names(); len(got) != 0 {
		t.Errorf("runs = %v, want none: %s passed before the schedule named it", got, passed.Format(time.RFC3339))
	}
	if next := h.get().Status.NextScheduleTime; next == nil || !next.Time.Equal(passed.Add(24*time.Hour)) {
		t.Errorf("nextScheduleTime = %v, want %s", next, passed.Add(24*time.Hour).Format(time.RFC3339))
	}
	if ev := h.events(); !strings.Contains(ev, custodyv1alpha1.ReasonScheduleChanged+` The schedule is now "`+cw.Spec.Schedule+`" (UTC), `+
		`was "0 0 29 2 *" (UTC): it counts from now`) {
		t.Errorf("events = %q, want ScheduleChanged", ev)
	}
	if got := h.tick(); !got.Equal(passed.Add(24 * time.Hour)) {
		t.Errorf("ran at %s, want %s", got, passed.Add(24*time.Hour))
	}
	if got := h.names(); len(got) != 1 {
		t.Errorf("runs = %v, want one, the next day", got)
	}
	// Nothing else about the CronWorkflow moves the count: after an outage, the most recent time runs.
	h.finish(h.names()[0], custodyv1alpha1.WorkflowSucceeded)
	cw = h.get()
	cw.Spec.ConcurrencyPolicy = custodyv1alpha1.ConcurrencyForbid
	if err := env.Client.Update(ctxT(t), cw); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(25 * time.Hour)
	h.reconcile()
	if got := h.names(); len(got) != 2 {
		t.Errorf("runs after a day's outage = %v, want a second one", got)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCronWorkflow_historyLimitsPrune: beyond the limits, the oldest finished runs are deleted;
// running ones never are.
func TestCronWorkflow_historyLimitsPrune(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "metadata: {name: history}"+strings.Replace(inline, "spec:\n",
		"spec:\n  successfulRunsHistoryLimit: 2\n  failedRunsHistoryLimit: 1\n", 1))
	times := make([]time.Time, 0, 6)
	for range 6 {
		times = append(times, h.tick())
	}
	name := func(i int) string { return cronschedule.RunName("history", times[i]) }
	h.finish(name(0), custodyv1alpha1.WorkflowSucceeded)
	h.finish(name(1), custodyv1alpha1.WorkflowFailed)
	h.finish(name(2), custodyv1alpha1.WorkflowSucceeded)
	h.finish(name(3), custodyv1alpha1.WorkflowCancelled)
	h.finish(name(4), custodyv1alpha1.WorkflowSucceeded)
	// Recorded as the manager records them: the two deletions of one pass must not fold into one.
	h.r.Recorder = env.EventRecorder(t, "custody-test")
	h.reconcile()
	got := h.names()
	want := []string{name(2), name(3), name(4), name(5)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("runs kept = %v, want %v (2 succeeded, 1 failed, the running one)", got, want)
	}
	wantEvents := []string{
		name(0) + ": Deleted Succeeded run " + name(0) + " (history limit 2)",
		name(1) + ": Deleted Failed run " + name(1) + " (history limit 1)",
	}
	slices.Sort(wantEvents)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(ctxT(t), &list, client.InNamespace(h.cw.Namespace)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range list.Items {
			if e.Reason == custodyv1alpha1.ReasonRunDeleted && e.Series == nil && e.Related != nil && e.Related.Kind == "Workflow" {
				got = append(got, e.Related.Name+": "+e.Note)
			}
		}
		slices.Sort(got)
		if slices.Equal(got, wantEvents) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RunDeleted Events %q, want %q", got, wantEvents)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCronWorkflow_suspendTemplateAndInvalidSchedule: suspended creates nothing and reports it;
// a run from a template carries the template label; a missing template skips the schedule; a
// schedule that does not parse stalls the CronWorkflow with the parser's message.
func TestCronWorkflow_suspendTemplateAndInvalidSchedule(t *testing.T) {
	t.Parallel()
	s := newHarness(t, "metadata: {name: paused}"+strings.Replace(inline, "spec:\n", "spec:\n  suspend: true\n", 1))
	s.clock.Step(time.Hour)
	s.reconcile()
	if got := s.names(); len(got) != 0 {
		t.Errorf("a suspended CronWorkflow created %v", got)
	}
	if c := condition(s.get(), custodyv1alpha1.ConditionReady); c == nil || c.Reason != custodyv1alpha1.ReasonSuspended || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want True with reason Suspended", c)
	}
	if got := kstatusOf(t, s.get()); got != status.CurrentStatus {
		t.Errorf("kstatus of a suspended CronWorkflow = %s, want Current (a GitOps sync must not wait for it)", got)
	}

	tpl := newHarness(t, `
metadata: {name: from-template}
spec:
  schedule: "@hourly"
  workflowSpec:
    workflowTemplateRef: {name: report}
    parameters: [{name: env, value: prod}]
`)
	tpl.tick()
	if got := tpl.names(); len(got) != 0 {
		t.Errorf("runs without the template = %v", got)
	}
	if ev := tpl.events(); !strings.Contains(ev, "WorkflowTemplate report does not exist") {
		t.Errorf("events = %q, want RunSkipped naming the template", ev)
	}
	if c := condition(tpl.get(), custodyv1alpha1.ConditionStalled); c == nil || c.Reason != custodyv1alpha1.ReasonTemplateNotFound {
		t.Errorf("Stalled = %+v, want reason TemplateNotFound", c)
	}
	template := &custodyv1alpha1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: tpl.cw.Namespace},
		Spec: custodyv1alpha1.WorkflowTemplateSpec{Parameters: []custodyv1alpha1.ParameterSpec{{Name: "env"}},
			Steps: []custodyv1alpha1.Step{{Name: "report", Image: "example.com/r:1"}}}}
	if err := env.Client.Create(ctxT(t), template); err != nil {
		t.Fatal(err)
	}
	tpl.tick()
	if c := condition(tpl.get(), custodyv1alpha1.ConditionStalled); c != nil {
		t.Errorf("Stalled = %+v after the template was created", c)
	}
	runs := tpl.runs()
	if len(runs) != 1 || runs[0].Labels[custodyv1alpha1.LabelTemplate] != "report" || runs[0].Spec.WorkflowTemplateRef == nil {
		t.Errorf("runs = %v, want one run of the template with its label", tpl.names())
	}

	bad := newHarness(t, `
metadata: {name: bad}
spec:
  schedule: "*/5 * * *"
  workflowSpec:
    steps: [{name: s, image: example.com/s:1}]
`)
	bad.reconcile()
	cw := bad.get()
	if c := condition(cw, custodyv1alpha1.ConditionStalled); c == nil || c.Reason != custodyv1alpha1.ReasonInvalidSchedule ||
		!strings.Contains(c.Message, "expected exactly 5 fields") {
		t.Errorf("Stalled = %+v, want InvalidSchedule with the parser's message", c)
	}
	if got := kstatusOf(t, cw); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed for a schedule that cannot run", got)
	}
}

func condition(cw *custodyv1alpha1.CronWorkflow, t string) *metav1.Condition {
	for i := range cw.Status.Conditions {
		if cw.Status.Conditions[i].Type == t {
			return &cw.Status.Conditions[i]
		}
	}
	return nil
}

func kstatusOf(t *testing.T, obj runtime.Object) status.Status { return testenv.Kstatus(t, obj) }

// TestCronWorkflow_authorMustStillUseTheGrants: each run is checked against the right of the
// CronWorkflow's author (custody.dev/authorized-by, which admission records) to use the grants it
// requests. While dana may use app-db, runs are created; once her RoleBinding is gone
// (offboarding), the CronWorkflow is Stalled (GrantNotUsable) and due runs are skipped.
func TestCronWorkflow_authorMustStillUseTheGrants(t *testing.T) {
	t.Parallel()
	h := newHarness(t, `
metadata:
  name: payroll
  annotations: {custody.dev/authorized-by: '{"user":"dana","groups":["payroll-team"]}'}
spec:
  schedule: "*/5 * * * *"
  workflowSpec:
    steps: [{name: pay, image: example.com/pay:1, credentials: [app-db]}]
`)
	h.r.Authz = env.Client
	ns := h.cw.Namespace
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "use-app-db", Namespace: ns}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"use"}, ResourceNames: []string{"app-db"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "payroll-team-use", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "payroll-team"}}}
	for _, o := range []client.Object{role, binding, grant(t, ns, "app-db", "custody.dev/cronworkflow: payroll", "pay")} {
		if err := env.Client.Create(ctxT(t), o); err != nil {
			t.Fatal(err)
		}
	}
	waitUse(t, ns, true)
	first := h.tick()
	if got := h.names(); len(got) != 1 || got[0] != cronschedule.RunName("payroll", first) {
		t.Fatalf("runs while dana may use app-db = %v", got)
	}
	if c := condition(h.get(), custodyv1alpha1.ConditionStalled); c != nil {
		t.Errorf("Stalled = %+v while the author may use the grant", c)
	}

	if err := env.Client.Delete(ctxT(t), binding); err != nil {
		t.Fatal(err)
	}
	waitUse(t, ns, false)
	h.reconcile()
	c := condition(h.get(), custodyv1alpha1.ConditionStalled)
	if c == nil || c.Reason != custodyv1alpha1.ReasonGrantNotUsable || !strings.Contains(c.Message, "dana") || !strings.Contains(c.Message, "app-db") {
		t.Errorf("Stalled = %+v, want GrantNotUsable naming dana and app-db, before the next run is due", c)
	}
	h.events()
	skipped := h.tick()
	if got := h.names(); len(got) != 1 {
		t.Errorf("runs after dana lost the right = %v, want no new one", got)
	}
	if ev := h.events(); !strings.Contains(ev, "RunSkipped") || !strings.Contains(ev, skipped.UTC().Format(time.RFC3339)) {
		t.Errorf("events = %q, want RunSkipped for %s", ev, skipped)
	}
	if got := kstatusOf(t, h.get()); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed while runs are skipped", got)
	}
}

// waitUse waits until RBAC says whether dana (group payroll-team) may use app-db.
func waitUse(t *testing.T, ns string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: "dana", Groups: []string{"payroll-team"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "use", Group: "custody.dev",
				Resource: "credentialgrants", Name: "app-db"}}}
		if err := env.Client.Create(ctxT(t), sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC never said allowed=%v", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grant is a Secret grant in ns for steps of the workflows its subject's selector (one label,
// "key: value") selects.
func grant(t *testing.T, ns, name, label, steps string) *custodyv1alpha1.CredentialGrant {
	t.Helper()
	g := &custodyv1alpha1.CredentialGrant{}
	if err := yaml.UnmarshalStrict([]byte(`
subjects: [{workflowSelector: {matchLabels: {`+label+`}}, steps: [`+steps+`]}]
credential: {secret: {name: db, keys: [password]}}`), &g.Spec); err != nil {
		t.Fatal(err)
	}
	g.Name, g.Namespace = name, ns
	return g
}

// TestCronWorkflow_grantsThatWouldKeepRunsWaiting: a grant that names the CronWorkflow as a
// workflow covers none of its runs (they are named after it and a time). The CronWorkflow says so
// (Ready False, Stalled: a GitOps tool shows it Degraded) with what to select instead, and still
// creates its runs; once the grant selects its runs it is Ready again, and a deleted grant stalls
// it anew. A grant's change wakes the CronWorkflows whose steps (inline or their template's)
// request it, and no others.
func TestCronWorkflow_grantsThatWouldKeepRunsWaiting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, `
metadata: {name: nightly}
spec:
  schedule: "*/5 * * * *"
  workflowSpec:
    steps: [{name: pay, image: example.com/pay:1, credentials: [app-db]}]
`)
	ns := h.cw.Namespace
	g := grant(t, ns, "app-db", "app: pay", "pay")
	g.Spec.Subjects[0].WorkflowSelector, g.Spec.Subjects[0].WorkflowName = nil, "nightly"
	if err := env.Client.Create(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	c := condition(h.get(), custodyv1alpha1.ConditionStalled)
	want := `step "pay" of its runs will wait: CredentialGrant app-db names workflow nightly, but a CronWorkflow's runs are named ` +
		`nightly-<minutes since the epoch>; to cover every run, select custody.dev/cronworkflow=nightly in its subjects (workflowSelector)`
	if c == nil || c.Reason != custodyv1alpha1.ReasonGrantNotCovered || c.Message != want {
		t.Errorf("Stalled = %+v, want GrantNotCovered: %s", c, want)
	}
	if got := kstatusOf(t, h.get()); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed (Argo CD: Degraded) while its runs would wait", got)
	}
	if ev := h.events(); !strings.Contains(ev, "Warning GrantNotCovered "+want) {
		t.Errorf("events = %q, want a Warning GrantNotCovered Event with the message", ev)
	}
	h.reconcile()
	if ev := h.events(); ev != "" {
		t.Errorf("events on the next reconcile = %q, want none: nothing changed", ev)
	}
	h.tick()
	if got := h.names(); len(got) != 1 {
		t.Errorf("runs = %v, want the due run created all the same (the grant may be fixed while it waits)", got)
	}

	if got := h.r.grantToCronWorkflows(ctxT(t), g); len(got) != 1 || got[0].Name != "nightly" {
		t.Errorf("a change of app-db wakes %v, want nightly", got)
	}
	g.Spec.Subjects[0].WorkflowName = ""
	g.Spec.Subjects[0].WorkflowSelector = &metav1.LabelSelector{MatchLabels: map[string]string{custodyv1alpha1.LabelCronWorkflow: "nightly"}}
	if err := env.Client.Update(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	if c := condition(h.get(), custodyv1alpha1.ConditionStalled); c != nil {
		t.Errorf("Stalled = %+v once the grant selects the runs", c)
	}
	if c := condition(h.get(), custodyv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v once the grant selects the runs", c)
	}

	// A grant that ends before the next run: the CronWorkflow looks again when it ends, not at the
	// next run, and is Stalled from then.
	ends := h.clock.Now().Add(2 * time.Minute).Truncate(time.Second)
	g.Spec.ExpiresAt = &metav1.Time{Time: ends}
	if err := env.Client.Update(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	if res := h.reconcile(); res.RequeueAfter != ends.Sub(h.clock.Now())+time.Second {
		t.Errorf("requeue after %s, want when the grant ends (in %s)", res.RequeueAfter, ends.Sub(h.clock.Now()))
	}
	if next := h.get().Status.NextScheduleTime; next == nil || !next.After(ends) {
		t.Fatalf("nextScheduleTime %v, want after the grant's end %s", next, ends)
	}
	h.clock.SetTime(ends.Add(time.Second))
	h.reconcile()
	if c := condition(h.get(), custodyv1alpha1.ConditionStalled); c == nil || c.Reason != custodyv1alpha1.ReasonGrantExpired {
		t.Errorf("Stalled = %+v once the grant ended, want GrantExpired", c)
	}

	if err := env.Client.Delete(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	if c := condition(h.get(), custodyv1alpha1.ConditionStalled); c == nil || c.Reason != custodyv1alpha1.ReasonGrantNotFound ||
		!strings.Contains(c.Message, "CredentialGrant app-db does not exist") {
		t.Errorf("Stalled = %+v, want GrantNotFound once the grant is gone", c)
	}

	// A CronWorkflow of a template is woken by the template's grants; one that requests none is not.
	tpl := &custodyv1alpha1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: ns},
		Spec: custodyv1alpha1.WorkflowTemplateSpec{Steps: []custodyv1alpha1.Step{{Name: "report", Image: "example.com/r:1",
			Credentials: []string{"reports"}}}}}
	for _, o := range []client.Object{tpl,
		&custodyv1alpha1.CronWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "weekly", Namespace: ns}, Spec: custodyv1alpha1.CronWorkflowSpec{
			Schedule: "@weekly", WorkflowSpec: custodyv1alpha1.WorkflowSpec{WorkflowTemplateRef: &custodyv1alpha1.WorkflowTemplateRef{Name: "report"}}}},
	} {
		if err := env.Client.Create(ctxT(t), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.r.grantToCronWorkflows(ctxT(t), grant(t, ns, "reports", "app: r", "report")); len(got) != 1 || got[0].Name != "weekly" {
		t.Errorf("a change of reports wakes %v, want weekly", got)
	}
}
