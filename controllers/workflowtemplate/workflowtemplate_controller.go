// Package workflowtemplate holds the WorkflowTemplate reconciler: it checks a template as
// admission checks a Workflow (cycles, `when`, references to parameters and results) and whether
// the grants its steps request would let its runs' steps start (they exist, cover runs of the
// template, have not ended), and reports whether it can run (Ready, or Stalled with reason
// InvalidSpec, GrantNotFound, GrantNotCovered or GrantExpired), so that a GitOps tool shows a
// broken definition before any run of it fails or waits. Runs resolve templates themselves (see
// the Workflow reconciler).
//
// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates/status,verbs=patch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=list;watch
package workflowtemplate

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/text"
	"github.com/custody-dev/custody/internal/webhook"
)

// ControllerName is the controller's name: field owner of its writes.
const ControllerName = "custody-workflowtemplate"

// Reconciler reports whether WorkflowTemplates can run.
type Reconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Clock tells the time grants end by (the real clock when nil).
	Clock clock.PassiveClock
}

// Reconcile checks one template and writes its conditions.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := r.Get(ctx, req.NamespacedName, tpl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tpl.DeepCopy()
	ready := metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonValid, Message: fmt.Sprintf("%d steps, %d finally steps, %d parameters",
			len(tpl.Spec.Steps), len(tpl.Spec.Finally), len(tpl.Spec.Parameters)), ObservedGeneration: tpl.Generation}
	var requeue time.Duration
	reason, msgs := "", []string(nil)
	if errs := webhook.ValidateWorkflowTemplateSpec(&tpl.Spec); len(errs) > 0 {
		reason = custodyv1alpha1.ReasonInvalidSpec
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
	} else {
		now := r.now()
		steps := tpl.Spec.AllSteps()
		grants, ends, err := credentials.ReadGrants(ctx, r.Client, tpl.Namespace, steps, now)
		if err != nil {
			return ctrl.Result{}, err
		}
		for _, refusal := range credentials.CheckRuns(credentials.TemplateRun(tpl), steps, grants, now) {
			reason = cmp.Or(reason, refusal.Reason)
			msgs = append(msgs, refusal.Message)
		}
		if !ends.IsZero() {
			requeue = ends.Sub(now) + time.Second // GrantExpired from when it ends
		}
	}
	if reason != "" {
		msg := text.Truncate(strings.Join(msgs, "; "), text.EventNoteMax) // the Event repeats it
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, reason, msg
		stalled := ready
		stalled.Type, stalled.Status = custodyv1alpha1.ConditionStalled, metav1.ConditionTrue
		meta.SetStatusCondition(&tpl.Status.Conditions, stalled)
	} else {
		meta.RemoveStatusCondition(&tpl.Status.Conditions, custodyv1alpha1.ConditionStalled)
	}
	meta.SetStatusCondition(&tpl.Status.Conditions, ready)
	tpl.Status.ObservedGeneration = tpl.Generation
	if equality.Semantic.DeepEqual(before.Status, tpl.Status) {
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	err := r.Status().Patch(ctx, tpl, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}),
		client.FieldOwner(ControllerName))
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("patching status of %s: %w", klog.KObj(tpl), err)
	}
	// An Event when the verdict changes (or on the first check of an invalid template).
	was := meta.FindStatusCondition(before.Status.Conditions, custodyv1alpha1.ConditionReady)
	if r.Recorder != nil && (was == nil && ready.Status == metav1.ConditionFalse || was != nil && was.Status != ready.Status) {
		eventType := corev1.EventTypeNormal
		if ready.Status == metav1.ConditionFalse {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(tpl, nil, eventType, ready.Reason, "Validate", "%s", ready.Message)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

func (r *Reconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// SetupWithManager registers the controller; only spec changes matter, the template's and those of
// the grants its steps request.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&custodyv1alpha1.WorkflowTemplate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A grant's spec (subjects, expiresAt) decides whether it covers the runs; its status
		// changes with every issuance and does not.
		Watches(&custodyv1alpha1.CredentialGrant{}, handler.EnqueueRequestsFromMapFunc(r.grantToTemplates),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// grantToTemplates wakes the templates of the grant's namespace whose steps request it: it was
// created, deleted, or its spec changed.
func (r *Reconciler) grantToTemplates(ctx context.Context, o client.Object) []reconcile.Request {
	var list custodyv1alpha1.WorkflowTemplateList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing WorkflowTemplates for a CredentialGrant change")
		return nil
	}
	var out []reconcile.Request
	for _, tpl := range list.Items {
		if slices.Contains(custodyv1alpha1.RequestedGrants(tpl.Spec.AllSteps()), o.GetName()) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&tpl)})
		}
	}
	return out
}
