package workflow

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;clusterroles,verbs=bind

// Revocation reasons (metrics and audit lines).
const (
	revokedAttemptEnded = "AttemptEnded"
	revokedExpired      = "Expired"
	revokedGrantChanged = "GrantWithdrawn"
	revokedDeleted      = "WorkflowDeleted"
)

// grantsFor reads the grants a step requests and returns them, or why the step may not hold
// them now (the first refusal).
func (r *Reconciler) grantsFor(ctx context.Context, s *scope, step *custodyv1alpha1.Step) ([]*custodyv1alpha1.CredentialGrant,
	*credentials.Refusal, error) {
	grants := make([]*custodyv1alpha1.CredentialGrant, 0, len(step.Credentials))
	for _, name := range step.Credentials {
		g := &custodyv1alpha1.CredentialGrant{}
		err := r.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: name}, g)
		if apierrors.IsNotFound(err) {
			g = nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("reading CredentialGrant %s: %w", name, err)
		}
		if refusal := credentials.Check(name, g, s.wf, step.Name); refusal != nil {
			return nil, refusal, nil
		}
		grants = append(grants, g)
	}
	return grants, nil, nil
}

// waitForGrants keeps a step that may not hold its credentials from starting: it says why, and
// fails the step once its timeout (counted from when it became ready) passed.
func (r *Reconciler) waitForGrants(s *scope, st *custodyv1alpha1.StepStatus, step *custodyv1alpha1.Step, refusal *credentials.Refusal) {
	if step.Timeout != nil && st.ReadyTime != nil {
		deadline := st.ReadyTime.Add(step.Timeout.Duration)
		if !s.now.Before(deadline) {
			msg := fmt.Sprintf("%s; gave up after the step's timeout of %s", refusal.Message, step.Timeout.Duration)
			s.setStep(st, custodyv1alpha1.StepFailed, refusal.Reason, msg)
			s.event(corev1.EventTypeWarning, refusal.Reason, "Start", "Step %s failed: %s", st.Name, msg)
			return
		}
		s.requeueAt(deadline)
	}
	if st.Reason == refusal.Reason && st.Message == refusal.Message {
		return
	}
	phase := st.Phase
	if phase != custodyv1alpha1.StepRetrying {
		phase = custodyv1alpha1.StepPending
	}
	s.setStep(st, phase, refusal.Reason, refusal.Message)
	s.event(corev1.EventTypeWarning, refusal.Reason, "Start", "Step %s waits: %s", st.Name, refusal.Message)
}

// previousHeld says whether the step's last attempt still holds a credential (its revocation is
// pending): the next attempt waits for it.
func previousHeld(st *custodyv1alpha1.StepStatus) bool {
	for _, c := range st.Credentials {
		if c.RevokedAt == nil {
			return true
		}
	}
	return false
}

// issue creates what attempt n holds under each grant, before its Job exists, and returns the
// pod volumes they need.
func (r *Reconciler) issue(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, n int32, attemptName string,
	grants []*custodyv1alpha1.CredentialGrant) ([]jobspec.CredentialVolume, error) {
	wf := s.wf
	owner := *metav1.NewControllerRef(wf, custodyv1alpha1.GroupVersion.WithKind("Workflow"))
	st.Credentials = nil
	var vols []jobspec.CredentialVolume
	for _, g := range grants {
		rec := custodyv1alpha1.IssuedCredential{Grant: g.Name, Kind: credentials.Kind(g), Attempt: n, SPIFFEID: st.SPIFFEID,
			IssuedAt: metav1.Time{Time: s.now}}
		if exp := credentials.ExpiresAt(g, s.now); !exp.IsZero() {
			rec.ExpiresAt = &metav1.Time{Time: exp}
			s.requeueAt(exp)
		}
		if rec.Kind == custodyv1alpha1.CredentialKindKubernetesRole {
			rb := credentials.RoleBinding(g, owner, attemptName, wf.Namespace, jobspec.Labels(wf.Name, st.Name, n))
			if err := r.Create(ctx, rb, client.FieldOwner(ControllerName)); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating RoleBinding %s for grant %s: %w", rb.Name, g.Name, err)
			}
			rec.Resource = "RoleBinding/" + rb.Name
			v, m := credentials.TokenVolume(g)
			vols = append(vols, jobspec.CredentialVolume{Volume: v, Mount: m})
		}
		st.Credentials = append(st.Credentials, rec)
		kind := string(rec.Kind)
		s.afterSave(func() { metrics.CredentialsIssued.WithLabelValues(kind).Inc() })
		r.audit(ctx, "issue", wf, st.Name, rec, "StepStarted")
		s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonCredentialIssued, "Issue",
			"Step %s attempt %d: issued %s credential of grant %s", st.Name, n, rec.Kind, g.Name)
	}
	return vols, nil
}

// reconcileCredentials revokes every issued credential whose attempt ended, whose ttl passed, or
// whose grant no longer allows it (deleted, suspended, subjects changed).
func (r *Reconciler) reconcileCredentials(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	var errs []error
	for i := range wf.Status.Steps {
		st := &wf.Status.Steps[i]
		for j := range st.Credentials {
			c := &st.Credentials[j]
			if c.RevokedAt != nil {
				continue
			}
			reason, err := r.revocationReason(ctx, s, st, c)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if reason == "" {
				if c.ExpiresAt != nil {
					s.requeueAt(c.ExpiresAt.Time)
				}
				continue
			}
			if err := r.revokeCredential(ctx, s, st, c, reason); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.requeueAt(s.now.Add(r.observed.failed(wf.UID)))
		s.revocationErr = errors.Join(s.revocationErr, err)
		return false, nil
	}
	return false, r.releaseFinalizer(ctx, s)
}

// revocationReason says why a live credential must go now, or "" if it may stay.
func (r *Reconciler) revocationReason(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus,
	c *custodyv1alpha1.IssuedCredential) (string, error) {
	switch {
	case c.Attempt != st.Attempt || st.Phase != custodyv1alpha1.StepRunning || s.attemptEnded(st) || isFinished(s.wf.Status.Phase):
		return revokedAttemptEnded, nil
	case c.ExpiresAt != nil && !s.now.Before(c.ExpiresAt.Time):
		return revokedExpired, nil
	}
	g := &custodyv1alpha1.CredentialGrant{}
	err := r.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: c.Grant}, g)
	if apierrors.IsNotFound(err) {
		return revokedGrantChanged, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading CredentialGrant %s: %w", c.Grant, err)
	}
	if g.Spec.Suspended || !credentials.Covers(g, s.wf, st.Name) || credentials.Kind(g) != c.Kind {
		return revokedGrantChanged, nil
	}
	return "", nil
}

// revokeCredential deletes what carried a credential and records the revocation.
func (r *Reconciler) revokeCredential(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus,
	c *custodyv1alpha1.IssuedCredential, reason string) error {
	if err := r.deleteResource(ctx, s.wf.Namespace, c.Resource); err != nil {
		return err
	}
	c.RevokedAt = &metav1.Time{Time: s.now}
	kind := string(c.Kind)
	s.afterSave(func() { metrics.CredentialsRevoked.WithLabelValues(kind, reason).Inc() })
	r.audit(ctx, "revoke", s.wf, st.Name, *c, reason)
	s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonCredentialRevoked, "Revoke",
		"Step %s attempt %d: revoked %s credential of grant %s (%s)", st.Name, c.Attempt, c.Kind, c.Grant, reason)
	return nil
}

// deleteResource deletes "RoleBinding/<name>" (the only carrier so far); gone is fine.
func (r *Reconciler) deleteResource(ctx context.Context, namespace, resource string) error {
	kind, name, ok := cutResource(resource)
	if !ok {
		return nil
	}
	var obj client.Object
	switch kind {
	case "RoleBinding":
		obj = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	default:
		return nil
	}
	if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %s: %w", resource, err)
	}
	return nil
}

func cutResource(resource string) (kind, name string, ok bool) {
	for i := 0; i < len(resource); i++ {
		if resource[i] == '/' {
			return resource[:i], resource[i+1:], i > 0 && i < len(resource)-1
		}
	}
	return "", "", false
}

// credentialsHeld says whether any attempt still holds a credential.
func credentialsHeld(wf *custodyv1alpha1.Workflow) bool {
	for _, st := range wf.Status.Steps {
		if previousHeld(&st) {
			return true
		}
	}
	return false
}

// finalizeCredentials revokes whatever a deleted workflow's attempts still hold.
func (r *Reconciler) finalizeCredentials(ctx context.Context, wf *custodyv1alpha1.Workflow) error {
	var errs []error
	for _, st := range wf.Status.Steps {
		for _, c := range st.Credentials {
			if c.RevokedAt != nil {
				continue
			}
			if err := r.deleteResource(ctx, wf.Namespace, c.Resource); err != nil {
				errs = append(errs, err)
				continue
			}
			c.RevokedAt = &metav1.Time{Time: r.Clock.Now()}
			r.audit(ctx, "revoke", wf, st.Name, c, revokedDeleted)
		}
	}
	return errors.Join(errs...)
}

// audit writes one structured line per issue and revoke: who did what to which attempt under
// which grant, and why. Never a credential value: there is none in these records.
func (r *Reconciler) audit(ctx context.Context, action string, wf *custodyv1alpha1.Workflow, step string,
	c custodyv1alpha1.IssuedCredential, reason string) {
	ctrl.LoggerFrom(ctx).WithName("audit").Info("Credential "+action,
		"action", action, "actor", ControllerName, "subject", c.SPIFFEID, "grant", klog.KRef(wf.Namespace, c.Grant),
		"kind", c.Kind, "workflow", klog.KObj(wf), "workflowUID", wf.UID, "step", step, "attempt", c.Attempt,
		"resource", c.Resource, "reason", reason)
}

// grantToWorkflows maps a CredentialGrant to the unfinished Workflows of its namespace that
// request it or hold one of its credentials.
func (r *Reconciler) grantToWorkflows(ctx context.Context, o client.Object) []reconcile.Request {
	var list custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Workflows for a CredentialGrant change")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		wf := &list.Items[i]
		if requests(wf, o.GetName()) && (!isFinished(wf.Status.Phase) || credentialsHeld(wf)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(wf)})
		}
	}
	return reqs
}

func requests(wf *custodyv1alpha1.Workflow, grant string) bool {
	for _, st := range wf.Spec.Steps {
		for _, g := range st.Credentials {
			if g == grant {
				return true
			}
		}
	}
	return false
}
