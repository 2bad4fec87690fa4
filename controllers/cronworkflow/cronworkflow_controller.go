package cronworkflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/cronschedule"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/webhook"
)

// ControllerName is the controller's name: field owner of its writes and source of its Events.
const ControllerName = "custody-cronworkflow"

// Defaults of the history limits (the CRD defaults them too).
const (
	defaultSuccessfulHistory = 3
	defaultFailedHistory     = 1
)

// Reconciler creates the runs of CronWorkflows.
type Reconciler struct {
	client.Client
	// Authz creates SubjectAccessReviews (a direct client: the manager's cached client cannot).
	Authz    client.Client
	Recorder events.EventRecorder
	// Clock is the time the schedules are evaluated at; tests inject a fake one.
	Clock clock.PassiveClock
}

// scope carries one reconcile's state.
type scope struct {
	cw       *custodyv1alpha1.CronWorkflow
	now      time.Time
	runs     []custodyv1alpha1.Workflow
	events   []func()
	recorder events.EventRecorder
	// cond is the Ready condition (and Stalled when stalled is set).
	cond    metav1.Condition
	stalled bool
	// forbidden says why the author may not run what is due (GrantNotUsable).
	forbidden string
	// templateMissing names the runs' WorkflowTemplate when it does not exist.
	templateMissing string
	// runsWait says which grants would keep steps of its runs waiting (runsWouldWait).
	runsWait []credentials.Refusal
	// grantsEnd is when the first grant its runs request that has not ended ends (zero: none does).
	grantsEnd time.Time
}

// event queues an Event about the schedule, recorded after the status was saved.
func (s *scope) event(eventType, reason, note string, args ...any) {
	s.runEvent(nil, eventType, reason, "Schedule", note, args...)
}

// runEvent queues an Event about something done to one run, which is its related object. The
// events.k8s.io recorder folds Events with the same regarding object, reason, action and related
// object recorded after one save into a count on the first one's note: without the run, deleting
// two runs beyond the history limit in one pass would show as one.
func (s *scope) runEvent(run *custodyv1alpha1.Workflow, eventType, reason, action, note string, args ...any) {
	msg := fmt.Sprintf(note, args...)
	var related runtime.Object
	if run != nil {
		related = run
	}
	s.events = append(s.events, func() {
		if s.recorder != nil {
			s.recorder.Eventf(s.cw, related, eventType, reason, action, "%s", msg)
		}
	})
}

// count queues a CronWorkflowSchedules increment, made after the status was saved (a retried
// reconcile does not count twice).
func (s *scope) count(result string, n int) {
	s.events = append(s.events, func() { metrics.CronWorkflowSchedules.WithLabelValues(result).Add(float64(n)) })
}

// Reconcile brings one CronWorkflow up to now: it records its runs, prunes the history, creates
// the run that is due (if any) and asks to be woken at the next scheduled time.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cw := &custodyv1alpha1.CronWorkflow{}
	if err := r.Get(ctx, req.NamespacedName, cw); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cw.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // its runs go with it (owner references)
	}
	before := cw.DeepCopy()
	s := &scope{cw: cw, now: r.clock().Now(), recorder: r.Recorder}
	result, err := r.reconcile(ctx, s)
	setConditions(cw, s)
	if err == nil {
		cw.Status.ObservedGeneration = cw.Generation
	}
	if !equality.Semantic.DeepEqual(before.Status, cw.Status) {
		if perr := r.Status().Patch(ctx, cw, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}),
			client.FieldOwner(ControllerName)); perr != nil && !apierrors.IsNotFound(perr) {
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("patching status of %s: %w", klog.KObj(cw), perr))
		}
	}
	for _, e := range s.events {
		e()
	}
	if err != nil {
		metrics.ReconcileErrors.WithLabelValues(ControllerName, "Other").Inc()
		return ctrl.Result{}, err
	}
	return result, nil
}

func (r *Reconciler) clock() clock.PassiveClock {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

func (r *Reconciler) reconcile(ctx context.Context, s *scope) (ctrl.Result, error) {
	cw := s.cw
	if err := r.listRuns(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	r.recordRuns(s)
	if err := r.pruneHistory(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	tz := ""
	if cw.Spec.TimeZone != nil {
		tz = *cw.Spec.TimeZone
	}
	sched, err := cronschedule.Parse(cw.Spec.Schedule, tz)
	if err != nil {
		s.stalled = true
		s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonInvalidSchedule, Message: err.Error()}
		cw.Status.NextScheduleTime = nil
		return ctrl.Result{}, nil // nothing to retry until the spec changes
	}
	if cw.Spec.Suspend {
		// Ready: suspended is what the spec asks for (kstatus Current, Argo CD Healthy, so a GitOps
		// sync that waits for health does not wait for it forever).
		s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: custodyv1alpha1.ReasonSuspended, Message: "Suspended: no runs are created"}
		cw.Status.NextScheduleTime = nil
		return ctrl.Result{}, nil
	}
	// What a run would get now (one read of the template), and whether the author may still use
	// the grants it requests: reported at every reconcile, not only when a run is due, so that a
	// missing template or a withdrawn right shows before the next run is skipped.
	steps, tpl, err := credentials.CronDefinition(ctx, r.Client, cw)
	switch ref := cw.Spec.WorkflowSpec.WorkflowTemplateRef; {
	case apierrors.IsNotFound(err):
		// Whatever is due is skipped (createRun says so); the creation of the template wakes
		// this CronWorkflow.
		s.templateMissing = ref.Name
		defer func() {
			s.stalled = true
			s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
				Reason: custodyv1alpha1.ReasonTemplateNotFound, Message: fmt.Sprintf("WorkflowTemplate %s does not exist: "+
					"scheduled runs are skipped until it is created", ref.Name)}
		}()
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading WorkflowTemplate %s: %w", ref.Name, err)
	}
	if s.templateMissing == "" {
		denied, err := r.authorMayNotUse(ctx, cw, steps)
		if err != nil {
			return ctrl.Result{}, err
		}
		s.forbidden = denied
		if s.runsWait, s.grantsEnd, err = r.runsWouldWait(ctx, cw, tpl, steps, s.now); err != nil {
			return ctrl.Result{}, err
		}
	}

	last := cw.CreationTimestamp.Time
	if cw.Status.LastScheduleTime != nil {
		last = cw.Status.LastScheduleTime.Time
	}
	if since := observeSchedule(s, tz); since.After(last) {
		last = since
	}
	var deadline *time.Duration
	if cw.Spec.StartingDeadlineSeconds != nil {
		d := time.Duration(*cw.Spec.StartingDeadlineSeconds) * time.Second
		deadline = &d
	}
	due := cronschedule.Decide(sched, last, s.now, deadline)
	s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonScheduled, Message: "Next run at " + due.Next.UTC().Format(time.RFC3339)}
	result := ctrl.Result{}
	if due.Next.IsZero() { // cannot happen for a schedule Parse accepted; never spin on it
		cw.Status.NextScheduleTime = nil
		s.cond.Message = "No further scheduled time"
	} else {
		cw.Status.NextScheduleTime = &metav1.Time{Time: due.Next}
		result.RequeueAfter = max(due.Next.Sub(s.now), time.Second)
	}
	if !s.grantsEnd.IsZero() && (result.RequeueAfter == 0 || s.grantsEnd.Sub(s.now) < result.RequeueAfter) {
		// Turn Stalled (GrantExpired) when a grant its runs need ends, not at the next run.
		result.RequeueAfter = s.grantsEnd.Sub(s.now) + time.Second
	}
	if !due.Time.IsZero() {
		if err := r.handle(ctx, s, due); err != nil {
			return ctrl.Result{}, err
		}
	}
	switch {
	case s.forbidden != "":
		s.stalled = true
		s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonGrantNotUsable, Message: "Runs are skipped: " + s.forbidden}
	case len(s.runsWait) > 0:
		// Runs are still created (the grant may be fixed while one waits), but nothing will get
		// going without a change: Stalled, so that a GitOps tool shows the CronWorkflow Degraded.
		msgs := make([]string, 0, len(s.runsWait))
		for _, w := range s.runsWait {
			msgs = append(msgs, w.Message)
		}
		s.stalled = true
		s.cond = metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: s.runsWait[0].Reason, Message: strings.Join(msgs, "; ")}
		// A Warning Event when it turns so (or its words change), not at every reconcile.
		if was := meta.FindStatusCondition(cw.Status.Conditions, custodyv1alpha1.ConditionReady); was == nil ||
			was.Reason != s.cond.Reason || was.Message != s.cond.Message {
			s.event(corev1.EventTypeWarning, s.cond.Reason, "%s", s.cond.Message)
		}
	}
	return result, nil
}

// runsWouldWait says which grants, as they are now, would keep steps of the CronWorkflow's runs
// waiting (credentials.CheckRuns): a grant that does not exist, does not cover the runs (one that
// names the CronWorkflow as a workflow covers none: its runs are named after it and a time), or
// expired; and when the first of them that has not ended ends (spec.expiresAt; zero: none does).
// A grant's change wakes the CronWorkflows whose steps request it (grantToCronWorkflows).
func (r *Reconciler) runsWouldWait(ctx context.Context, cw *custodyv1alpha1.CronWorkflow, tpl *custodyv1alpha1.WorkflowTemplate,
	steps []custodyv1alpha1.Step, now time.Time) ([]credentials.Refusal, time.Time, error) {
	grants, ends, err := credentials.ReadGrants(ctx, r.Client, cw.Namespace, steps, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	return credentials.CheckRuns(credentials.CronRun(cw, tpl), steps, grants, now), ends, nil
}

// observeSchedule records the schedule and time zone in status and returns since when scheduled
// times count: the CronWorkflow's creation, or the reconcile that saw the schedule change (with
// an Event). A time of a new schedule that passed before the change is not due (kubernetes#63371).
func observeSchedule(s *scope, tz string) time.Time {
	cw := s.cw
	old := cw.Status.Schedule
	if old != nil && old.Schedule == cw.Spec.Schedule && old.TimeZone == tz {
		return old.Since.Time
	}
	since := cw.CreationTimestamp.Time
	if old != nil {
		since = s.now
		zone := func(tz string) string { return cmp.Or(tz, "UTC") }
		s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonScheduleChanged,
			"The schedule is now %q (%s), was %q (%s): it counts from now, so times it names that have passed do not run",
			cw.Spec.Schedule, zone(tz), old.Schedule, zone(old.TimeZone))
	}
	cw.Status.Schedule = &custodyv1alpha1.ObservedSchedule{Schedule: cw.Spec.Schedule, TimeZone: tz, Since: metav1.Time{Time: since}}
	return since
}

// handle acts on a due scheduled time: it creates its run (or finds it created), unless it is
// missed or the concurrency policy forbids it. Either way the time is handled once: it becomes
// lastScheduleTime.
func (r *Reconciler) handle(ctx context.Context, s *scope, due cronschedule.Due) error {
	cw := s.cw
	// One MissedSchedule Event says all that was missed (two would fold into one).
	var missed []string
	defer func() {
		if len(missed) > 0 {
			s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonMissedSchedule, "%s", strings.Join(missed, "; "))
		}
	}()
	if due.Missed > 0 {
		missed = append(missed, fmt.Sprintf("Missed %d scheduled runs before %s (the controller was not running, "+
			"or the CronWorkflow was suspended); they are not made up", due.Missed, due.Time.UTC().Format(time.RFC3339)))
		s.count("missed", due.Missed)
	}
	name := cronschedule.RunName(cw.Name, due.Time)
	exists := false
	for _, run := range s.runs {
		exists = exists || run.Name == name
	}
	switch {
	case exists:
		// Created before a restart or a lost status write: nothing to do but record it.
	case due.TooLate:
		missed = append(missed, fmt.Sprintf("Missed the run scheduled for %s: it is more than startingDeadlineSeconds (%ds) late",
			due.Time.UTC().Format(time.RFC3339), *cw.Spec.StartingDeadlineSeconds))
		s.count("missed", 1)
	case cw.Spec.ConcurrencyPolicy == custodyv1alpha1.ConcurrencyForbid && len(cw.Status.Active) > 0:
		s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonRunSkipped,
			"Skipped the run scheduled for %s: %s is still running (concurrencyPolicy Forbid)",
			due.Time.UTC().Format(time.RFC3339), cw.Status.Active[0].Name)
		s.count("skipped", 1)
	default:
		created, err := r.createRun(ctx, s, name, due)
		if err != nil {
			return err
		}
		if !created {
			break // skipped: the template is missing or a grant is not usable
		}
		if cw.Spec.ConcurrencyPolicy == custodyv1alpha1.ConcurrencyReplace {
			if err := r.replace(ctx, s, name); err != nil {
				return err
			}
		}
		cw.Status.Active = append(cw.Status.Active, custodyv1alpha1.RunReference{Name: name, ScheduledTime: metav1.Time{Time: due.Time}})
	}
	cw.Status.LastScheduleTime = &metav1.Time{Time: due.Time}
	return nil
}

// createRun creates the run for a scheduled time. It reports false (and an Event) when the
// template the runs reference does not exist, or the author may not use a grant they request: the
// schedule is skipped rather than leaving a run that waits or fails.
func (r *Reconciler) createRun(ctx context.Context, s *scope, name string, due cronschedule.Due) (bool, error) {
	cw, scheduled := s.cw, due.Time
	skip := ""
	switch {
	case s.templateMissing != "":
		skip = fmt.Sprintf("WorkflowTemplate %s does not exist", s.templateMissing)
	case s.forbidden != "":
		skip = s.forbidden
	}
	if skip != "" {
		s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonRunSkipped, "Skipped the run scheduled for %s: %s",
			scheduled.UTC().Format(time.RFC3339), skip)
		s.count("skipped", 1)
		return false, nil
	}
	spec := cw.Spec.WorkflowSpec.DeepCopy()
	wf := &custodyv1alpha1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cw.Namespace, Labels: cw.RunLabels(),
			Annotations: map[string]string{custodyv1alpha1.AnnotationScheduledTime: scheduled.UTC().Format(time.RFC3339)}},
		Spec: *spec,
	}
	if by := cw.Annotations[custodyv1alpha1.AnnotationCreatedBy]; by != "" {
		// Four-eyes: the CronWorkflow's author may not approve its runs' steps.
		wf.Annotations[custodyv1alpha1.AnnotationOnBehalfOf] = by
	}
	if err := controllerutil.SetControllerReference(cw, wf, r.Scheme()); err != nil {
		return false, err
	}
	err := r.Create(ctx, wf, client.FieldOwner(ControllerName))
	if apierrors.IsAlreadyExists(err) {
		return true, nil // created by an earlier reconcile whose status write was lost
	}
	if err != nil {
		return false, fmt.Errorf("creating run %s: %w", name, err)
	}
	skipped := ""
	if due.Skipped != "" {
		skipped = fmt.Sprintf(" (%s %s, a time the clock skipped when it went forward)", due.Skipped, ptr.Deref(cw.Spec.TimeZone, "UTC"))
	}
	s.runEvent(wf, corev1.EventTypeNormal, custodyv1alpha1.ReasonRunCreated, "Schedule", "Created run %s for %s%s",
		name, scheduled.UTC().Format(time.RFC3339), skipped)
	s.count("created", 1)
	return true, nil
}

// authorMayNotUse checks, as the CronWorkflow's author (custody.dev/authorized-by, recorded by
// admission), `use` on every grant the run's steps request: a CronWorkflow runs with its author's
// authority, which may have been withdrawn since it was written. It returns why not, or "".
// Without the annotation (no admission) there is no author to check.
func (r *Reconciler) authorMayNotUse(ctx context.Context, cw *custodyv1alpha1.CronWorkflow, steps []custodyv1alpha1.Step) (string, error) {
	author, ok := custodyv1alpha1.ParseAuthor(cw.Annotations[custodyv1alpha1.AnnotationAuthorizedBy])
	if !ok || r.Authz == nil {
		return "", nil
	}
	lacking, err := webhook.GrantsNotUsable(ctx, r.Authz, authenticationv1.UserInfo{Username: author.User, Groups: author.Groups},
		cw.Namespace, steps)
	if err != nil {
		return "", fmt.Errorf("asking whether %s may use the grants its runs request: %w", author.User, err)
	}
	if len(lacking) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%s, who wrote its spec, may not use the CredentialGrants %s (any more)", author.User,
		strings.Join(lacking, ", ")), nil
}

// replace cancels every active run but the new one (concurrencyPolicy Replace): cancel, not
// delete, so their credentials are revoked, their finally steps run and they stay on record.
func (r *Reconciler) replace(ctx context.Context, s *scope, keep string) error {
	for i := range s.runs {
		run := &s.runs[i]
		if run.Name == keep || isFinished(run.Status.Phase) || run.Spec.Cancel {
			continue
		}
		patch := client.MergeFrom(run.DeepCopy())
		run.Spec.Cancel = true
		if run.Annotations == nil {
			run.Annotations = map[string]string{}
		}
		run.Annotations[custodyv1alpha1.AnnotationCancelReason] = fmt.Sprintf(
			"CronWorkflow %s replaced it with %s (concurrencyPolicy Replace)", s.cw.Name, keep)
		if err := r.Patch(ctx, run, patch, client.FieldOwner(ControllerName)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("cancelling run %s: %w", run.Name, err)
		}
		s.runEvent(run, corev1.EventTypeNormal, custodyv1alpha1.ReasonRunReplaced, "Schedule",
			"Cancelled run %s to start %s (concurrencyPolicy Replace)", run.Name, keep)
		s.count("replaced", 1)
	}
	return nil
}

// listRuns reads the runs this CronWorkflow controls, oldest scheduled first.
func (r *Reconciler) listRuns(ctx context.Context, s *scope) error {
	var list custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &list, client.InNamespace(s.cw.Namespace),
		client.MatchingLabels{custodyv1alpha1.LabelCronWorkflow: s.cw.Name}); err != nil {
		return fmt.Errorf("listing runs of %s: %w", klog.KObj(s.cw), err)
	}
	s.runs = s.runs[:0]
	for _, wf := range list.Items {
		if metav1.IsControlledBy(&wf, s.cw) {
			s.runs = append(s.runs, wf)
		}
	}
	sort.Slice(s.runs, func(i, j int) bool { return s.runs[i].ScheduledTime().Before(s.runs[j].ScheduledTime()) })
	return nil
}

// recordRuns sets status.active and the last successful run from the runs.
func (r *Reconciler) recordRuns(s *scope) {
	cw := s.cw
	cw.Status.Active = nil
	for i := range s.runs {
		run := &s.runs[i]
		switch {
		case !isFinished(run.Status.Phase) && run.DeletionTimestamp.IsZero():
			cw.Status.Active = append(cw.Status.Active, custodyv1alpha1.RunReference{Name: run.Name,
				ScheduledTime: metav1.Time{Time: run.ScheduledTime()}})
		case run.Status.Phase == custodyv1alpha1.WorkflowSucceeded && run.Status.CompletionTime != nil:
			if cw.Status.LastSuccessfulTime == nil || cw.Status.LastSuccessfulTime.Before(run.Status.CompletionTime) {
				cw.Status.LastSuccessfulTime = run.Status.CompletionTime.DeepCopy()
				cw.Status.LastSuccessfulRun = run.Name
			}
		}
	}
	if len(cw.Status.Active) > 64 {
		cw.Status.Active = cw.Status.Active[len(cw.Status.Active)-64:]
	}
}

// pruneHistory deletes the oldest finished runs beyond the history limits: succeeded runs beyond
// successfulRunsHistoryLimit, failed and cancelled runs beyond failedRunsHistoryLimit.
func (r *Reconciler) pruneHistory(ctx context.Context, s *scope) error {
	keepOK, keepFailed := int32(defaultSuccessfulHistory), int32(defaultFailedHistory)
	if l := s.cw.Spec.SuccessfulRunsHistoryLimit; l != nil {
		keepOK = *l
	}
	if l := s.cw.Spec.FailedRunsHistoryLimit; l != nil {
		keepFailed = *l
	}
	var ok, failed []*custodyv1alpha1.Workflow
	for i := range s.runs {
		run := &s.runs[i]
		if !run.DeletionTimestamp.IsZero() {
			continue
		}
		switch run.Status.Phase {
		case custodyv1alpha1.WorkflowSucceeded:
			ok = append(ok, run)
		case custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
			failed = append(failed, run)
		}
	}
	for _, set := range []struct {
		runs []*custodyv1alpha1.Workflow
		keep int32
	}{{ok, keepOK}, {failed, keepFailed}} {
		for i := 0; i < len(set.runs)-int(set.keep); i++ { // oldest first
			run := set.runs[i]
			err := r.Delete(ctx, run, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &run.UID})
			if client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting run %s beyond the history limit: %w", run.Name, err)
			}
			s.runEvent(run, corev1.EventTypeNormal, custodyv1alpha1.ReasonRunDeleted, "Prune", "Deleted %s run %s (history limit %d)",
				run.Status.Phase, run.Name, set.keep)
		}
	}
	return nil
}

// setConditions writes Ready, and Stalled only while the schedule cannot be read.
func setConditions(cw *custodyv1alpha1.CronWorkflow, s *scope) {
	if s.cond.Type == "" {
		return // the reconcile failed before deciding; keep what was there
	}
	s.cond.ObservedGeneration = cw.Generation
	meta.SetStatusCondition(&cw.Status.Conditions, s.cond)
	if s.stalled {
		stalled := s.cond
		stalled.Type, stalled.Status = custodyv1alpha1.ConditionStalled, metav1.ConditionTrue
		meta.SetStatusCondition(&cw.Status.Conditions, stalled)
	} else {
		meta.RemoveStatusCondition(&cw.Status.Conditions, custodyv1alpha1.ConditionStalled)
	}
}

func isFinished(p custodyv1alpha1.WorkflowPhase) bool {
	return p == custodyv1alpha1.WorkflowSucceeded || p == custodyv1alpha1.WorkflowFailed || p == custodyv1alpha1.WorkflowCancelled
}

// SetupWithManager registers the controller: it watches CronWorkflows and the runs they own (a
// run ending matters to Forbid, the history and the last successful run).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&custodyv1alpha1.CronWorkflow{}).
		Owns(&custodyv1alpha1.Workflow{}).
		// A template's creation or deletion, or a change of its spec (the grants its steps request).
		Watches(&custodyv1alpha1.WorkflowTemplate{}, handler.EnqueueRequestsFromMapFunc(r.templateToCronWorkflows),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A grant's spec (subjects, expiresAt) decides whether it covers the runs; its status
		// changes with every issuance and does not.
		Watches(&custodyv1alpha1.CredentialGrant{}, handler.EnqueueRequestsFromMapFunc(r.grantToCronWorkflows),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// grantToCronWorkflows wakes the CronWorkflows of the grant's namespace whose runs' steps (inline,
// or their template's) request it: it was created, deleted, or its spec changed.
func (r *Reconciler) grantToCronWorkflows(ctx context.Context, o client.Object) []reconcile.Request {
	var list custodyv1alpha1.CronWorkflowList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing CronWorkflows for a CredentialGrant change")
		return nil
	}
	requests := func(steps []custodyv1alpha1.Step) bool {
		return slices.Contains(custodyv1alpha1.RequestedGrants(steps), o.GetName())
	}
	var out []reconcile.Request
	for _, cw := range list.Items {
		steps, _, err := credentials.CronDefinition(ctx, r.Client, &cw)
		if err != nil {
			continue // a missing template stalls it already; its creation wakes it
		}
		if requests(steps) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cw)})
		}
	}
	return out
}

// templateToCronWorkflows wakes the CronWorkflows of a template that was created, deleted or changed.
func (r *Reconciler) templateToCronWorkflows(ctx context.Context, o client.Object) []reconcile.Request {
	var list custodyv1alpha1.CronWorkflowList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing CronWorkflows for a WorkflowTemplate change")
		return nil
	}
	var out []reconcile.Request
	for _, cw := range list.Items {
		if ref := cw.Spec.WorkflowSpec.WorkflowTemplateRef; ref != nil && ref.Name == o.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cw)})
		}
	}
	return out
}
