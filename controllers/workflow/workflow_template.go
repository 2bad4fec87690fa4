package workflow

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/text"
)

// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates,verbs=get;list;watch

// templateRefIndex indexes Workflows by the WorkflowTemplate they reference.
const templateRefIndex = "spec.workflowTemplateRef.name"

// resolveTemplate resolves a run of a WorkflowTemplate once: it checks the run's parameters
// against the template's declarations and records the template's generation and spec in
// status.template, which is what the run executes from then on. Nothing else happens in that
// reconcile, so that no Job exists before the record is saved; the status write brings the next.
func (r *Reconciler) resolveTemplate(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	ref := wf.Spec.WorkflowTemplateRef
	if ref == nil {
		return false, nil
	}
	if wf.Labels[custodyv1alpha1.LabelTemplate] != ref.Name {
		// Admission sets it; without admission the controller does, before anything can match it.
		if err := r.patchMetadata(ctx, s, func(w *custodyv1alpha1.Workflow) bool {
			if w.Labels == nil {
				w.Labels = map[string]string{}
			}
			w.Labels[custodyv1alpha1.LabelTemplate] = ref.Name
			return true
		}); err != nil {
			return true, err
		}
	}
	if wf.Status.Template != nil {
		return false, nil
	}
	if wf.Status.StartTime == nil {
		wf.Status.StartTime = &metav1.Time{Time: s.now}
	}
	if wf.Spec.Cancel {
		wf.Status.Phase = custodyv1alpha1.WorkflowCancelled
		wf.Status.CompletionTime = &metav1.Time{Time: s.now}
		s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonCancelled, "Stop", "%s (before its template was resolved)",
			wf.Cancellation())
		return true, nil
	}
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	err := r.Get(ctx, client.ObjectKey{Namespace: wf.Namespace, Name: ref.Name}, tpl)
	if apierrors.IsNotFound(err) {
		wf.Status.Phase = custodyv1alpha1.WorkflowPending
		if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReconciling); c == nil ||
			c.Reason != custodyv1alpha1.ReasonTemplateNotFound {
			// Once, not at every reconcile while it waits.
			s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonTemplateNotFound, "Resolve",
				"WorkflowTemplate %s does not exist; the run waits for it", ref.Name)
		}
		s.waiting = fmt.Sprintf("WorkflowTemplate %s does not exist; the run starts when it is created", ref.Name)
		if wf.Spec.Timeout != nil {
			s.requeueAt(wf.Status.StartTime.Add(wf.Spec.Timeout.Duration))
			if !s.now.Before(wf.Status.StartTime.Add(wf.Spec.Timeout.Duration)) {
				wf.Status.Phase = custodyv1alpha1.WorkflowFailed
				wf.Status.CompletionTime = &metav1.Time{Time: s.now}
				s.invalid = fmt.Errorf("the workflow's timeout of %s passed while WorkflowTemplate %s did not exist",
					wf.Spec.Timeout.Duration, ref.Name)
				s.invalidReason = custodyv1alpha1.ReasonTimedOut
				s.waiting = ""
			}
		}
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("reading WorkflowTemplate %s: %w", ref.Name, err)
	}
	err = custodyv1alpha1.CheckParameters(tpl.Spec.Parameters, wf.Spec.Parameters)
	if err == nil {
		// The items of forEach steps that come from parameters are known now.
		err = custodyv1alpha1.CheckItems(&tpl.Spec, custodyv1alpha1.ParameterValues(tpl.Spec.Parameters, wf.Spec.Parameters))
	}
	if err != nil {
		wf.Status.Phase = custodyv1alpha1.WorkflowFailed
		wf.Status.CompletionTime = &metav1.Time{Time: s.now}
		s.invalid = fmt.Errorf("WorkflowTemplate %s: %w", ref.Name, err)
		s.invalidReason = custodyv1alpha1.ReasonInvalidParameters
		s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonInvalidParameters, "Resolve", "%s", text.Truncate(s.invalid.Error(), 1024))
		return true, nil
	}
	wf.Status.Template = &custodyv1alpha1.ResolvedTemplate{Name: tpl.Name, UID: string(tpl.UID),
		Generation: tpl.Generation, ResolvedTime: &metav1.Time{Time: s.now}, Spec: *tpl.Spec.DeepCopy()}
	wf.Status.Phase = custodyv1alpha1.WorkflowPending
	s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonTemplateResolved, "Resolve",
		"Resolved WorkflowTemplate %s at generation %d", tpl.Name, tpl.Generation)
	return true, nil
}

// templateToWorkflows wakes the runs waiting for a template that was created.
func (r *Reconciler) templateToWorkflows(ctx context.Context, o client.Object) []reconcile.Request {
	var wfs custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &wfs, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{templateRefIndex: o.GetName()}); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, wf := range wfs.Items {
		if wf.Status.Template == nil && !isFinished(wf.Status.Phase) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: wf.Namespace, Name: wf.Name}})
		}
	}
	return out
}

// indexTemplateRef is the indexer of templateRefIndex.
func indexTemplateRef(o client.Object) []string {
	wf, ok := o.(*custodyv1alpha1.Workflow)
	if !ok || wf.Spec.WorkflowTemplateRef == nil {
		return nil
	}
	return []string{wf.Spec.WorkflowTemplateRef.Name}
}
