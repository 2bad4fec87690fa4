// Package workflowtemplate holds the WorkflowTemplate reconciler: it checks a template as
// admission checks a Workflow (cycles, `when`, references to parameters and results) and reports
// whether it can run (Ready, or Stalled with reason InvalidSpec), so that a GitOps tool shows a
// broken definition before any run of it fails. Runs resolve templates themselves (see the Workflow
// reconciler).
//
// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates/status,verbs=patch
package workflowtemplate

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/text"
	"github.com/custody-dev/custody/internal/webhook"
)

// ControllerName is the controller's name: field owner of its writes.
const ControllerName = "custody-workflowtemplate"

// Reconciler reports whether WorkflowTemplates can run.
type Reconciler struct {
	client.Client
	Recorder events.EventRecorder
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
	if errs := webhook.ValidateWorkflowTemplateSpec(&tpl.Spec); len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		msg := text.Truncate(strings.Join(msgs, "; "), text.EventNoteMax) // the Event repeats it
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, custodyv1alpha1.ReasonInvalidSpec, msg
		stalled := ready
		stalled.Type, stalled.Status = custodyv1alpha1.ConditionStalled, metav1.ConditionTrue
		meta.SetStatusCondition(&tpl.Status.Conditions, stalled)
	} else {
		meta.RemoveStatusCondition(&tpl.Status.Conditions, custodyv1alpha1.ConditionStalled)
	}
	meta.SetStatusCondition(&tpl.Status.Conditions, ready)
	tpl.Status.ObservedGeneration = tpl.Generation
	if equality.Semantic.DeepEqual(before.Status, tpl.Status) {
		return ctrl.Result{}, nil
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
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller; only spec changes matter.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&custodyv1alpha1.WorkflowTemplate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
