package workflow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/dag"
	"github.com/custody-dev/custody/internal/expr"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/metrics"
)

// ControllerName is the controller's name: field owner of its writes and source of its Events.
const ControllerName = "custody-workflow"

// Reconciler reconciles Workflows into per-step-attempt ServiceAccounts and Jobs.
type Reconciler struct {
	client.Client
	// APIReader reads from the API server, bypassing the cache, where a stale cache could make the
	// controller act twice (for example to confirm that a Job is really gone).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Identity says how step attempts get SPIFFE identities; nil or without a Registrar, steps
	// run without identity.
	Identity *identity.Config
	// MaxConcurrentReconciles is how many Workflows are reconciled at once (default 4).
	MaxConcurrentReconciles int
	// PodCreationGrace is how long a running attempt's Job may be without a pod before the
	// controller looks for the Job controller's FailedCreate Events to say why (default 10s).
	PodCreationGrace time.Duration
	// PodStartGrace is how long a step's pod may be on its node with its container not yet created
	// before the controller looks for the kubelet's Warning Events to say why (default 30s).
	PodStartGrace time.Duration
	// PodStopMargin is how long past its deletion's grace period a pod of an ended attempt is still
	// waited for before a retry, the finally steps or the run's end (default 30s).
	PodStopMargin time.Duration
	// DefaultTTLAfterFinished is the ttlAfterFinished of Workflows that set none; zero keeps them.
	DefaultTTLAfterFinished time.Duration
	// BroadRolesNeedApproval makes a step wait for a grant whose role reaches beyond the step and
	// that requires no approval, in every namespace not labelled
	// custody.dev/broad-roles-need-approval=false (--broad-roles-need-approval).
	BroadRolesNeedApproval bool
	// DefaultOnRevoke is the onRevoke of grants that set none (--grant-on-revoke; "" is Continue).
	DefaultOnRevoke custodyv1alpha1.RevokePolicy
	// UserNamespaces runs step pods in user namespaces of their own (hostUsers: false,
	// --step-user-namespaces).
	UserNamespaces bool

	observed *observations
	registry *registry
	groups   *groupHolders
	wake     chan event.GenericEvent
	// synced remembers, per live Secret copy, the source resourceVersion it holds.
	synced sync.Map
}

// scope carries one reconcile's state through the phases.
type scope struct {
	wf    *custodyv1alpha1.Workflow
	now   time.Time
	graph *dag.Graph
	whens map[string]*expr.When
	// retryWhens holds the compiled retries.when of the steps that have one.
	retryWhens map[string]*expr.RetryWhen
	jobs       map[string]*batchv1.Job // by name
	pods       map[string]*corev1.Pod  // latest pod by Job name
	sas        map[string]*corev1.ServiceAccount

	// def is what the run executes: its inline steps or its resolved template.
	def custodyv1alpha1.WorkflowTemplateSpec
	// finally are the names of the finally steps; finallyGraph orders them.
	finally      map[string]bool
	finallyGraph *dag.Graph
	// slots is how many more steps may start in this reconcile (parallelism); -1 is no limit.
	slots int
	// waiting says why a run that cannot start yet waits (its template does not exist).
	waiting string
	// groupWait says why a run of a concurrency group may not start steps now ("" when it may).
	groupWait string
	// stopWait says which pod of an ended attempt the finally steps or the run's end wait for
	// ("" when none).
	stopWait string
	// podStopMargin is the Reconciler's PodStopMargin.
	podStopMargin time.Duration

	// invalid is set when the spec passed admission but cannot run; the workflow fails, with
	// invalidReason (InvalidSpec when empty).
	invalid       error
	invalidReason string
	// requeueAfter is the earliest timer (retry, timeout, TTL) that needs a reconcile.
	requeueAfter time.Duration
	// deleted is set when the TTL phase deleted the Workflow: nothing is left to patch.
	deleted bool
	// stopReason is Cancelled or TimedOut when the run must stop.
	stopReason string
	// before is the Workflow as read, before this reconcile changed it.
	before *custodyv1alpha1.Workflow
	// revocationErr is set when SPIRE or a revocation failed; the reconcile retries after a
	// backoff.
	revocationErr error
	// saved are Events and metric updates to record once the status that explains them is
	// saved, so that a reconcile retried after a conflict does not count or report twice.
	saved    []func()
	recorder events.EventRecorder
}

// requeueAt asks for a reconcile at t (keeping the earliest of all requests).
func (s *scope) requeueAt(t time.Time) {
	d := t.Sub(s.now)
	if d < time.Second {
		d = time.Second
	}
	if s.requeueAfter == 0 || d < s.requeueAfter {
		s.requeueAfter = d
	}
}

// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=core,resources=serviceaccounts,verbs=list;watch;create;delete
// +kubebuilder:rbac:groups=core,resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=core,resources=nodes,verbs=list;watch

// Reconcile moves one Workflow forward: observe attempts, stop it if cancelled or timed out,
// start what is ready, then compute status. Every name it creates is derived from the workflow's
// UID, step and attempt, so running it twice never duplicates anything.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	wf := &custodyv1alpha1.Workflow{}
	if err := r.Get(ctx, req.NamespacedName, wf); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !wf.DeletionTimestamp.IsZero() {
		// Owned Jobs and ServiceAccounts go with the Workflow (garbage collection) once every
		// entry its attempts held is revoked.
		return r.finalize(ctx, wf)
	}

	before := wf.DeepCopy()
	s := &scope{wf: wf, now: r.Clock.Now(), recorder: r.Recorder, before: before, podStopMargin: r.PodStopMargin}
	defer func() {
		if !s.deleted {
			computeStatus(s, retErr)
			if !isFinished(before.Status.Phase) && isFinished(wf.Status.Phase) {
				s.afterSave(func() { metrics.ObserveFinished(wf) }) // once: a retried reconcile sees it finished
			}
			if err := r.patchStatus(ctx, before, wf); err != nil {
				retErr = errors.Join(retErr, err)
				s.saved = nil
			}
		}
		for _, f := range s.saved {
			f()
		}
		if s.revocationErr != nil {
			// Retried after the backoff requested in the scope, not the workqueue's.
			ctrl.LoggerFrom(ctx).Error(s.revocationErr, "Revocation (SPIRE entry or credential) failed; retrying",
				"retryAfter", s.requeueAfter)
			metrics.ReconcileErrors.WithLabelValues(ControllerName, "SPIRE").Inc()
		}
		if retErr != nil {
			// controller-runtime logs the error; count it by reason.
			metrics.ReconcileErrors.WithLabelValues(ControllerName, errorReason(retErr)).Inc()
		}
		if retErr == nil && s.requeueAfter > 0 {
			result.RequeueAfter = s.requeueAfter
		}
	}()

	// Each phase records facts in the scope and the status; it returns done=true when nothing
	// after it has work to do. Conditions are computed once, in the deferred computeStatus.
	phases := []func(context.Context, *scope) (bool, error){
		r.reconcileFinished,
		r.resolveTemplate,
		r.reconcileSpec,
		r.reconcileReuse,
		r.observeAttempts,
		r.reconcileStop,
		r.reconcileGroup,
		r.reconcileSteps,
		r.reconcileOutcome,
		r.reconcileIdentities,
		r.reconcileCredentials,
		r.stopUnrecordedJobs,
		r.releaseRoleBindings,
		r.releaseServiceAccounts,
	}
	for _, phase := range phases {
		done, err := phase(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if done {
			break
		}
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) patchStatus(ctx context.Context, before, wf *custodyv1alpha1.Workflow) error {
	if equalStatus(before.Status, wf.Status) {
		return nil
	}
	// The optimistic lock makes a reconcile that started from a stale cached copy fail with a
	// conflict (and retry) instead of overwriting newer status.
	err := r.Status().Patch(ctx, wf, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}),
		client.FieldOwner(ControllerName))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patching status of %s: %w", klog.KObj(wf), err)
	}
	return nil
}

// errorReason is a coarse, bounded label for a reconcile error.
func errorReason(err error) string {
	if reason := apierrors.ReasonForError(err); reason != metav1.StatusReasonUnknown {
		return string(reason)
	}
	return "Other"
}

// SetupWithManager registers the controller: it watches Workflows, the Jobs they own, and the
// pods of those Jobs (for node, pod name and results).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.PodCreationGrace == 0 {
		r.PodCreationGrace = 10 * time.Second
	}
	if r.PodStartGrace == 0 {
		r.PodStartGrace = 30 * time.Second
	}
	if r.PodStopMargin == 0 {
		r.PodStopMargin = 30 * time.Second
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 4
	}
	r.observed = newObservations()
	r.registry = newRegistry()
	r.groups = newGroupHolders()
	r.wake = make(chan event.GenericEvent, 1024)
	if r.Identity.Enabled() && r.Identity.SweepInterval > 0 {
		if err := mgr.Add(&Sweeper{Reader: mgr.GetClient(), APIReader: r.APIReader, Identity: r.Identity,
			Interval: r.Identity.SweepInterval, MinAge: 30 * time.Second}); err != nil {
			return err
		}
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &custodyv1alpha1.Workflow{},
		templateRefIndex, indexTemplateRef); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &custodyv1alpha1.Workflow{},
		concurrencyGroupIndex, indexConcurrencyGroup); err != nil {
		return err
	}
	for _, o := range []client.Object{&batchv1.Job{}, &corev1.Pod{}, &corev1.ServiceAccount{}} {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), o, workflowIndex, indexWorkflow); err != nil {
			return err
		}
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&custodyv1alpha1.Workflow{}).
		Watches(&custodyv1alpha1.Workflow{}, handler.EnqueueRequestsFromMapFunc(r.groupPeers),
			builder.WithPredicates(groupRunEnded)).
		Owns(&batchv1.Job{}, builder.WithPredicates(jobEnded)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.podToWorkflow),
			builder.WithPredicates(predicate.Or(podMatters, podProblemChanged))).
		WatchesRawSource(source.Channel(r.wake, &handler.EnqueueRequestForObject{})).
		Watches(&custodyv1alpha1.CredentialGrant{}, handler.EnqueueRequestsFromMapFunc(r.grantToWorkflows)).
		Watches(&custodyv1alpha1.WorkflowTemplate{}, handler.EnqueueRequestsFromMapFunc(r.templateToWorkflows),
			builder.WithPredicates(predicate.Funcs{
				UpdateFunc:  func(event.UpdateEvent) bool { return false },
				DeleteFunc:  func(event.DeleteEvent) bool { return false },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToWorkflows),
			builder.WithPredicates(grantableSecret)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
	if err != nil || !r.Identity.Enabled() {
		return err
	}
	// The identity controller: one SPIRE call per step pod event, never a Workflow write.
	return ctrl.NewControllerManagedBy(mgr).
		Named(IdentityControllerName).
		For(&corev1.Pod{}, builder.WithPredicates(podMatters)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, identityRetryMax)}).
		Complete(reconcile.Func(r.reconcilePod))
}

// workflowIndex indexes the objects of step attempts (Jobs, pods, ServiceAccounts) by the Workflow
// they belong to, so that a reconcile reads its own attempts from the cache without going through
// every attempt of every workflow in the namespace.
const workflowIndex = "metadata.labels." + custodyv1alpha1.LabelWorkflow

// indexWorkflow is the indexer of workflowIndex: the custody.dev/workflow label.
func indexWorkflow(o client.Object) []string {
	if name := o.GetLabels()[custodyv1alpha1.LabelWorkflow]; name != "" {
		return []string{name}
	}
	return nil
}

// grantableSecret passes events of Secrets that opted in to being handed out (the manager's
// cache holds no others).
var grantableSecret = predicate.NewPredicateFuncs(func(o client.Object) bool {
	return o.GetLabels()[custodyv1alpha1.LabelGrantable] == "true"
})

// jobEnded passes Job events the reconciler acts on: creation, deletion, and updates that finish
// the Job. A Job's many progress updates (active, ready, ...) change nothing in the Workflow.
var jobEnded = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		oldJob, ok1 := e.ObjectOld.(*batchv1.Job)
		newJob, ok2 := e.ObjectNew.(*batchv1.Job)
		if !ok1 || !ok2 {
			return true
		}
		return jobFinished(oldJob) != jobFinished(newJob) || !newJob.DeletionTimestamp.IsZero()
	},
}

func jobFinished(j *batchv1.Job) bool {
	return jobCondition(j, batchv1.JobComplete) || jobCondition(j, batchv1.JobFailed)
}

// podMatters passes events of step pods that change what status shows: the pod appears, is
// scheduled on a node, its step container ends (results), it goes away, or a container is added to it (kubectl debug).
var podMatters = predicate.And(
	predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetLabels()[custodyv1alpha1.LabelWorkflow]
		return ok
	}),
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
		newPod, ok2 := e.ObjectNew.(*corev1.Pod)
		if !ok1 || !ok2 {
			return true
		}
		return oldPod.Spec.NodeName != newPod.Spec.NodeName ||
			(stepContainerState(oldPod) == nil) != (stepContainerState(newPod) == nil) ||
			!newPod.DeletionTimestamp.IsZero() ||
			len(oldPod.Spec.EphemeralContainers) != len(newPod.Spec.EphemeralContainers) // kubectl debug: endAlteredAttempt
	}},
)

// podProblemChanged passes updates of step pods that start or stop being stuck (podProblem):
// unschedulable, or a step container that cannot start.
var podProblemChanged = predicate.And(
	predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetLabels()[custodyv1alpha1.LabelWorkflow]
		return ok
	}),
	predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
			newPod, ok2 := e.ObjectNew.(*corev1.Pod)
			if !ok1 || !ok2 {
				return false
			}
			_, oldKey, _ := podProblem(oldPod)
			_, newKey, _ := podProblem(newPod)
			return oldKey != newKey
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	},
)

// podToWorkflow maps a step pod to its Workflow through the custody.dev/workflow label, and
// notes when the pod was first seen on a node (with identity) or ending: the starts of the
// registration and revocation latencies.
func (r *Reconciler) podToWorkflow(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[custodyv1alpha1.LabelWorkflow]
	if name == "" {
		return nil
	}
	if pod, ok := o.(*corev1.Pod); ok {
		r.observed.pod(pod, r.Clock.Now(), r.Identity.Enabled())
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}
