package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/cronschedule"
)

// cronName reads a reference to a CronWorkflow: cronworkflow/NAME (or ccwf/NAME, ..., as kubectl
// writes its kinds).
func cronName(ref string) (string, bool) {
	kind, name, _ := strings.Cut(ref, "/")
	switch strings.ToLower(kind) {
	case "cronworkflow", "cronworkflows", "ccwf", "cronworkflow.custody.dev", "cronworkflows.custody.dev":
		return name, name != ""
	}
	return "", false
}

// workflowName reads a Workflow's name, alone or as workflow/NAME (cwf/NAME).
func workflowName(ref string) (string, error) {
	kind, name, named := strings.Cut(ref, "/")
	if !named {
		return ref, nil
	}
	switch strings.ToLower(kind) {
	case "workflow", "workflows", "cwf", "workflow.custody.dev", "workflows.custody.dev":
		if name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("%q: name a workflow (NAME or workflow/NAME) or a CronWorkflow (cronworkflow/NAME)", ref)
}

// getCron prints a CronWorkflow: its schedule and state, then its runs, the newest first.
func (o *Options) getCron(c client.Client, ns, name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	cw := &custodyv1alpha1.CronWorkflow{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cw); err != nil {
		return err
	}
	var list custodyv1alpha1.WorkflowList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{custodyv1alpha1.LabelCronWorkflow: name}); err != nil {
		return err
	}
	cw.ManagedFields = nil
	var grants []templateGrant
	switch steps, tpl, err := credentials.CronDefinition(ctx, c, cw); {
	case err == nil:
		grants = stepGrants(ctx, c, steps, credentials.CronRun(cw, tpl), false)
	case !apierrors.IsNotFound(err): // a missing template: the CronWorkflow's state says so
		return err
	}
	return o.print(cw, func(w io.Writer) error { return writeCron(w, cw, grants, list.Items, o.Now()) })
}

// runState is a run's phase, what it waits for (an approver, a grant, its concurrency group) or
// how it ended ("-" when its phase says it all), and how long it has run or ran.
func runState(run *custodyv1alpha1.Workflow, now time.Time) (phase custodyv1alpha1.WorkflowPhase, reason, took string) {
	phase = run.Status.Phase
	if phase == "" {
		phase = custodyv1alpha1.WorkflowPending
	}
	took = "-"
	if st := run.Status.StartTime; st != nil {
		end := now
		if ct := run.Status.CompletionTime; ct != nil {
			end = ct.Time
		}
		took = age(end.Sub(st.Time))
	}
	reason = "-"
	if c := meta.FindStatusCondition(run.Status.Conditions, custodyv1alpha1.ConditionReady); c != nil && c.Reason != string(phase) {
		reason = c.Reason
	}
	return phase, reason, took
}

// writeCron prints a CronWorkflow, the grants its runs request (whether each can issue, until when,
// and whether it covers the scheduled runs), and its runs (those it controls: not a run started by
// hand with run --from, which is nobody's).
func writeCron(w io.Writer, cw *custodyv1alpha1.CronWorkflow, grants []templateGrant, runs []custodyv1alpha1.Workflow,
	now time.Time) error {
	tz := "UTC"
	if cw.Spec.TimeZone != nil {
		tz = *cw.Spec.TimeZone
	}
	state := readiness(cw.Status.Conditions, "not scheduled yet (no status)")
	_, _ = fmt.Fprintf(w, "%s/%s  %q (%s)  %s\n", cw.Namespace, cw.Name, cw.Spec.Schedule, tz, state)
	switch next := cw.Status.NextScheduleTime; {
	case cw.Spec.Suspend:
		_, _ = fmt.Fprintf(w, "   suspended: no run is created until spec.suspend is false; the times missed meanwhile are not made up\n")
	case next != nil:
		local := ""
		if loc, err := cronschedule.Location(ptr.Deref(cw.Spec.TimeZone, "")); err == nil && loc != time.UTC {
			local = next.In(loc).Format("15:04 MST") + ", " // the time of day the schedule names
		}
		_, _ = fmt.Fprintf(w, "   next run %s (%sin %s)\n", next.UTC().Format(time.RFC3339), local, age(max(next.Sub(now), 0)))
	}
	if o := cw.Status.Schedule; o != nil && o.Schedule == cw.Spec.Schedule && !o.Since.Equal(&cw.CreationTimestamp) {
		_, _ = fmt.Fprintf(w, "   schedule changed %s (%s ago): times it named before then do not run\n",
			o.Since.UTC().Format(time.RFC3339), age(max(now.Sub(o.Since.Time), 0)))
	}
	policy := cw.Spec.ConcurrencyPolicy
	if policy == "" {
		policy = custodyv1alpha1.ConcurrencyAllow
	}
	_, _ = fmt.Fprintf(w, "   concurrencyPolicy %s; keeps the last %d succeeded and %d failed runs\n", policy,
		ptr.Deref(cw.Spec.SuccessfulRunsHistoryLimit, 3), ptr.Deref(cw.Spec.FailedRunsHistoryLimit, 1))
	if t := cw.Status.LastSuccessfulTime; t != nil && cw.Status.LastSuccessfulRun != "" {
		_, _ = fmt.Fprintf(w, "   last succeeded: %s, finished %s (%s ago)\n", cw.Status.LastSuccessfulRun, t.UTC().Format(time.RFC3339),
			age(now.Sub(t.Time)))
	}
	if err := writeStepGrants(w, grants, "GRANTS ITS RUNS REQUEST: %d\n", false, now); err != nil {
		return err
	}
	var own []custodyv1alpha1.Workflow
	for _, run := range runs {
		if owner := metav1.GetControllerOfNoCopy(&run); owner != nil && owner.UID == cw.UID {
			own = append(own, run)
		}
	}
	if len(own) == 0 {
		_, _ = fmt.Fprintln(w, "no runs")
		return nil
	}
	slices.SortFunc(own, func(a, b custodyv1alpha1.Workflow) int { return b.ScheduledTime().Compare(a.ScheduledTime()) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "RUN\tSCHEDULED FOR\tPHASE\tREASON\tSTEPS\tDURATION")
	for i := range own {
		run := &own[i]
		phase, reason, took := runState(run, now)
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", run.Name, run.ScheduledTime().UTC().Format(time.RFC3339), phase,
			reason, orDash(run.Status.Progress), took)
	}
	return tw.Flush()
}
