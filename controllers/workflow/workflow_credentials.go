package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;clusterroles,verbs=bind
// +kubebuilder:rbac:groups=core,resources=secrets,verbs=get;list;watch;create;patch;delete

// Revocation reasons (metrics and audit lines).
const (
	revokedAttemptEnded = "AttemptEnded"
	revokedExpired      = "Expired"
	revokedGrantChanged = "GrantWithdrawn"
	// revokedGrantExpired: the grant's expiresAt came before the issuance's own end (it was moved
	// earlier after the issuance; an issuance made under it already ends by then: Expired).
	revokedGrantExpired    = "GrantExpired"
	revokedDeleted         = "WorkflowDeleted"
	revokedSourceWithdrawn = "SourceWithdrawn"
	// revokedUnrecorded: a RoleBinding no record accounts for (its issuance was never saved).
	revokedUnrecorded = "Unrecorded"
	// revokedRoleChanged: the rules of the grant's role changed since its approval, which covered
	// the rules it had then.
	revokedRoleChanged = custodyv1alpha1.ReasonRoleChanged
	// revokedApprovalRequired: the grant's role reaches beyond the step (widened since the
	// issuance, or its namespace asks it since) in a namespace that asks such grants to require an
	// approval, and the grant does not.
	revokedApprovalRequired = custodyv1alpha1.ReasonApprovalRequired
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
		if refusal := credentials.Check(name, g, s.wf, step.Name, s.now); refusal != nil {
			return nil, refusal, nil
		}
		if g.Spec.Credential.SPIFFE != nil && !r.Identity.Enabled() {
			return nil, &credentials.Refusal{Reason: ReasonIdentityNotConfigured, Message: fmt.Sprintf(
				"CredentialGrant %s shapes the step's SPIFFE identity, but SPIRE is not configured", name)}, nil
		}
		if g.Spec.Credential.Secret != nil {
			source, exists, err := r.source(ctx, g)
			if err != nil {
				return nil, nil, err
			}
			if refusal := credentials.CheckSource(g, source, exists); refusal != nil {
				return nil, refusal, nil
			}
		}
		if g.Spec.Credential.KubernetesRole != nil {
			refusal, err := r.roleRefusal(ctx, g)
			if err != nil {
				return nil, nil, err
			}
			if refusal != nil {
				// A change of the role, or of the namespace's labels (the grant controller watches
				// both), changes the grant's status, which reconciles this run.
				return nil, refusal, nil
			}
		}
		grants = append(grants, g)
	}
	return grants, nil, nil
}

// roleRefusal says why a role grant's role may not be handed out now: it does not exist, its rules
// changed since the grant's approval, or it reaches beyond the step in a namespace that asks such
// grants to require an approval, and the grant does not (then the step waits as for an approval).
func (r *Reconciler) roleRefusal(ctx context.Context, g *custodyv1alpha1.CredentialGrant) (*credentials.Refusal, error) {
	rules, exists, err := credentials.Role(ctx, r.APIReader, g)
	if err != nil || !exists {
		return credentials.RoleRefusal(g, exists), err
	}
	if changed, added := credentials.RoleChanged(g, rules); changed && g.Spec.Approval != nil && g.Spec.Approval.Required {
		return &credentials.Refusal{Reason: custodyv1alpha1.ReasonGrantNotApproved, Message: credentials.RoleChangedMessage(g, added)}, nil
	}
	refusal, err := credentials.ApprovalNeeded(ctx, r.APIReader, g, credentials.Reach(rules), r.BroadRolesNeedApproval)
	if refusal != nil {
		refusal.Reason = custodyv1alpha1.ReasonGrantNotApproved
	}
	return refusal, err
}

// waitForGrants keeps a step that may not hold its credentials from starting: it says why, and
// fails the step once its timeout (counted from when it became ready) passed.
func (r *Reconciler) waitForGrants(s *scope, st *custodyv1alpha1.StepStatus, step *custodyv1alpha1.Step, refusal *credentials.Refusal) {
	if step.Timeout != nil && st.ReadyTime != nil {
		deadline := st.ReadyTime.Add(step.Timeout.Duration)
		if !s.now.Before(deadline) {
			msg := fmt.Sprintf("%s; gave up after the step's timeout of %s", refusal.Message, step.Timeout.Duration)
			s.setStep(st, custodyv1alpha1.StepFailed, refusal.Reason, msg)
			s.stepEvent(st.Name, corev1.EventTypeWarning, refusal.Reason, "Start", "Step %s failed: %s", st.Name, msg)
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
	s.stepEvent(st.Name, corev1.EventTypeWarning, refusal.Reason, "Start", "Step %s waits: %s", st.Name, refusal.Message)
}

const (
	// pullSecretRecheck is how often a step that waits for its imagePullSecrets looks at them again.
	pullSecretRecheck = 15 * time.Second
)

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
	grants []*custodyv1alpha1.CredentialGrant) ([]jobspec.MountedVolume, error) {
	wf := s.wf
	owner := *metav1.NewControllerRef(wf, custodyv1alpha1.GroupVersion.WithKind("Workflow"))
	st.Credentials = nil
	var vols []jobspec.MountedVolume
	for _, g := range grants {
		rec := custodyv1alpha1.IssuedCredential{Grant: g.Name, Kind: credentials.Kind(g), Attempt: n, SPIFFEID: st.SPIFFEID,
			IssuedAt: metav1.Time{Time: s.now}, OnRevoke: g.OnRevokePolicy(r.DefaultOnRevoke)}
		if exp := credentials.ExpiresAt(g, s.now); !exp.IsZero() {
			rec.ExpiresAt = &metav1.Time{Time: exp}
			s.requeueAt(exp)
		}
		if rec.Kind == custodyv1alpha1.CredentialKindKubernetesRole {
			rb := credentials.RoleBinding(g, owner, attemptName, wf.Namespace, jobspec.Labels(wf.Name, st.Name, n))
			if err := r.Create(ctx, rb, client.FieldOwner(ControllerName)); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating RoleBinding %s for grant %s: %w", rb.Name, g.Name, err)
			}
			rec.Resource = resourceRef(kindRoleBinding, rb.Name)
			v, m := credentials.TokenVolume(g)
			vols = append(vols, jobspec.MountedVolume{Volume: v, Mount: m})
		}
		if rec.Kind == custodyv1alpha1.CredentialKindSecret {
			// The copy itself is made once the Job exists: it is owned by the Job.
			rec.Resource = resourceRef(kindSecret, credentials.ResourceName(attemptName, g.Name))
			v, m := credentials.SecretVolume(g, attemptName)
			vols = append(vols, jobspec.MountedVolume{Volume: v, Mount: m})
		}
		st.Credentials = append(st.Credentials, rec)
		kind := string(rec.Kind)
		s.afterSave(func() { metrics.CredentialsIssued.WithLabelValues(kind).Inc() })
		var extra []any
		if sc := g.Spec.Credential.SPIFFE; sc != nil {
			// Audiences are recorded for audit; SPIRE issues JWT-SVIDs for the audiences the step asks for.
			extra = append(extra, "audiences", sc.Audiences, "dnsNames", sc.DNSNames, "federatesWith", sc.FederatesWith)
		}
		r.audit(ctx, "issue", wf, st.Name, rec, "StepStarted", extra...)
		s.grantEvent(st.Name, g.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonCredentialIssued, "Issue",
			"Step %s attempt %d: issued %s credential of grant %s", st.Name, n, rec.Kind, g.Name)
	}
	return vols, nil
}

// source reads a secret grant's source: see credentials.Source.
func (r *Reconciler) source(ctx context.Context, g *custodyv1alpha1.CredentialGrant) (*corev1.Secret, bool, error) {
	return credentials.Source(ctx, r.Client, r.APIReader, g)
}

// grantedSecretValues returns the values the current attempt of st was given through secret
// grants, by a name that says where each comes from ("key password of Secret db, granted by
// backup"), read from the grants' sources as they are now. A grant or source gone since is
// skipped: its values can no longer be compared.
func (r *Reconciler) grantedSecretValues(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus) (map[string]string, error) {
	var out map[string]string
	for _, c := range st.Credentials {
		if c.Kind != custodyv1alpha1.CredentialKindSecret || c.Attempt != st.Attempt {
			continue
		}
		g := &custodyv1alpha1.CredentialGrant{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: c.Grant}, g); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading CredentialGrant %s: %w", c.Grant, err)
		}
		if g.Spec.Credential.Secret == nil {
			continue
		}
		src, _, err := r.source(ctx, g)
		if err != nil {
			return nil, err
		}
		if src == nil {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		for k, v := range credentials.CopyData(g, src) {
			out[fmt.Sprintf("key %s of Secret %s, granted by %s", k, src.Name, g.Name)] = string(v)
		}
	}
	return out, nil
}

// copySecrets makes the attempt's copies of its secret grants' sources, owned by its Job.
func (r *Reconciler) copySecrets(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, n int32, job *batchv1.Job,
	grants []*custodyv1alpha1.CredentialGrant) error {
	owner := metav1.OwnerReference{APIVersion: "batch/v1", Kind: jobKind, Name: job.Name, UID: job.UID}
	for _, g := range grants {
		if g.Spec.Credential.Secret == nil {
			continue
		}
		src, _, err := r.source(ctx, g)
		if err != nil {
			return err
		}
		if src == nil {
			return fmt.Errorf("the source Secret of grant %s went away while the attempt started", g.Name)
		}
		cp := credentials.SecretCopy(g, src, owner, job.Name, jobspec.Labels(s.wf.Name, st.Name, n))
		if err := r.Create(ctx, cp, client.FieldOwner(ControllerName)); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the copy %s of grant %s: %w", cp.Name, g.Name, err)
		}
		r.synced.Store(s.wf.Namespace+"/"+cp.Name, src.ResourceVersion)
	}
	return nil
}

// rotate brings a live copy up to date with its (grantable) source: a changed source reaches
// every copy.
func (r *Reconciler) rotate(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, c *custodyv1alpha1.IssuedCredential,
	g *custodyv1alpha1.CredentialGrant, src *corev1.Secret) error {
	_, name, _ := cutResource(c.Resource)
	key := s.wf.Namespace + "/" + name
	synced, seen := r.synced.Load(key)
	if seen && synced == src.ResourceVersion {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"data": credentials.CopyData(g, src)})
	if err != nil {
		return err
	}
	cp := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.wf.Namespace, Name: name}}
	if err := r.Patch(ctx, cp, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(ControllerName)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // not made yet (the Job is new) or already revoked
		}
		return fmt.Errorf("updating the copy %s of grant %s: %w", name, c.Grant, err)
	}
	r.synced.Store(key, src.ResourceVersion)
	if seen { // not the first sync after a start: the source changed
		r.audit(ctx, "renew", s.wf, st.Name, *c, "SourceChanged")
		s.grantEvent(st.Name, c.Grant, corev1.EventTypeNormal, custodyv1alpha1.ReasonCredentialRotated, "Rotate",
			"Step %s attempt %d: the copy of grant %s follows a change of Secret %s", st.Name, c.Attempt, c.Grant, src.Name)
	}
	return nil
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
			reason, g, src, err := r.revocationReason(ctx, s, st, c)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if g != nil {
				c.OnRevoke = g.OnRevokePolicy(r.DefaultOnRevoke) // the grant's policy while the credential is live
			}
			if reason == "" {
				if c.ExpiresAt != nil {
					s.requeueAt(c.ExpiresAt.Time)
				}
				if src != nil {
					if err := r.rotate(ctx, s, st, c, g, src); err != nil {
						errs = append(errs, err)
					}
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

// revocationReason says why a live credential must go now, or "" if it may stay. It returns the
// grant whenever it read it, and, for a secret grant that may stay, its source.
func (r *Reconciler) revocationReason(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus,
	c *custodyv1alpha1.IssuedCredential) (string, *custodyv1alpha1.CredentialGrant, *corev1.Secret, error) {
	switch {
	case c.Attempt != st.Attempt || st.Phase != custodyv1alpha1.StepRunning || s.attemptEnded(st) || isFinished(s.wf.Status.Phase):
		return revokedAttemptEnded, nil, nil, nil
	case c.ExpiresAt != nil && !s.now.Before(c.ExpiresAt.Time):
		return revokedExpired, nil, nil, nil
	}
	g := &custodyv1alpha1.CredentialGrant{}
	err := r.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: c.Grant}, g)
	if apierrors.IsNotFound(err) {
		return revokedGrantChanged, nil, nil, nil
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("reading CredentialGrant %s: %w", c.Grant, err)
	}
	if g.Spec.Suspended || !credentials.Covers(g, s.wf, st.Name) || credentials.Kind(g) != c.Kind {
		return revokedGrantChanged, g, nil, nil
	}
	if g.Expired(s.now) {
		return revokedGrantExpired, g, nil, nil
	}
	if c.Kind == custodyv1alpha1.CredentialKindKubernetesRole {
		// The step's binding would give it rules nobody approved.
		if credentials.RoleChangedSinceApproval(g) {
			return revokedRoleChanged, g, nil, nil
		}
		if credentials.ApprovalRequiredNow(g) {
			return revokedApprovalRequired, g, nil, nil
		}
	}
	if end := g.Spec.ExpiresAt; end != nil {
		s.requeueAt(end.Time) // moved earlier than the issuance's own expiry
	}
	if c.Kind != custodyv1alpha1.CredentialKindSecret {
		return "", g, nil, nil
	}
	// The Secret's owner may have withdrawn it (deleted it, or removed the opt-in label).
	src, _, err := r.source(ctx, g)
	if err != nil {
		return "", nil, nil, err
	}
	if src == nil {
		return revokedSourceWithdrawn, g, nil, nil
	}
	return "", g, src, nil
}

// revokeCredential deletes what carried a credential and records the revocation.
func (r *Reconciler) revokeCredential(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus,
	c *custodyv1alpha1.IssuedCredential, reason string) error {
	if c.Kind == custodyv1alpha1.CredentialKindSPIFFE && reason != revokedAttemptEnded {
		// The attempt keeps its identity; its entry loses what the grant added.
		if err := r.reshapeEntry(ctx, s, st, c); err != nil {
			return err
		}
	}
	if err := r.deleteResource(ctx, s.wf.Namespace, c.Resource); err != nil {
		return err
	}
	c.RevokedAt = &metav1.Time{Time: s.now}
	c.RevocationReason = reason
	kind := string(c.Kind)
	since := s.now
	if c.ExpiresAt != nil && reason == revokedExpired {
		since = c.ExpiresAt.Time
	} else if pod := s.pods[st.JobName]; pod != nil && reason == revokedAttemptEnded {
		since = r.observed.firstEnded(pod.UID, s.now)
	}
	latency := r.Clock.Now().Sub(since)
	s.afterSave(func() {
		metrics.CredentialsRevoked.WithLabelValues(kind, reason).Inc()
		metrics.CredentialRevocation.WithLabelValues(kind).Observe(latency.Seconds())
	})
	r.audit(ctx, "revoke", s.wf, st.Name, *c, reason)
	s.grantEvent(st.Name, c.Grant, corev1.EventTypeNormal, custodyv1alpha1.ReasonCredentialRevoked, "Revoke",
		"Step %s attempt %d: revoked %s credential of grant %s (%s)", st.Name, c.Attempt, c.Kind, c.Grant, reason)
	return nil
}

// ReasonIdentityNotConfigured means a step requests a spiffe grant while SPIRE is not configured.
const ReasonIdentityNotConfigured = "IdentityNotConfigured"

// reshapeEntry rewrites a running attempt's entry without the properties of a revoked spiffe
// issuance (Create updates an entry whose ID exists).
func (r *Reconciler) reshapeEntry(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus,
	c *custodyv1alpha1.IssuedCredential) error {
	pod, job := s.attemptOnNode(st), s.jobs[st.JobName]
	if !r.Identity.Enabled() || pod == nil || job == nil || st.Identity == nil || st.Identity.State != custodyv1alpha1.IdentityRegistered {
		return nil // no live entry to change
	}
	revoked := *c
	revoked.RevokedAt = &metav1.Time{Time: s.now}
	wf := s.wf.DeepCopy()
	if cur := stepStatus(wf, st.Name); cur != nil {
		for i := range cur.Credentials {
			if cur.Credentials[i].Grant == c.Grant && cur.Credentials[i].Attempt == c.Attempt {
				cur.Credentials[i] = revoked
			}
		}
	}
	e, err := r.buildEntry(ctx, wf, r.identityAttempt(wf, st.Name, st.Attempt), pod, job)
	if err != nil {
		return err
	}
	results, err := r.Identity.Registrar.Create(ctx, []identity.Entry{e})
	if err == nil {
		err = results[0]
	}
	if err != nil {
		return fmt.Errorf("removing grant %s from entry %s: %w", c.Grant, e.ID, err)
	}
	return nil
}

// deleteResource deletes "RoleBinding/<name>" or "Secret/<name>"; gone is fine. The object's
// UID is read from the API server first (metadata only) and the delete carries it as a
// precondition: the cached client would otherwise look the UID up in the cache, which does not
// hold Secret copies and may not yet hold a new RoleBinding, and report NotFound without deleting.
func (r *Reconciler) deleteResource(ctx context.Context, namespace, resource string) error {
	kind, name, ok := cutResource(resource)
	if !ok {
		return nil
	}
	var gvk schema.GroupVersionKind
	switch kind {
	case kindRoleBinding:
		gvk = rbacv1.SchemeGroupVersion.WithKind(kindRoleBinding)
	case kindSecret:
		gvk = corev1.SchemeGroupVersion.WithKind(kindSecret)
		defer r.synced.Delete(namespace + "/" + name)
	default:
		return nil
	}
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading %s: %w", resource, err)
	}
	if err := r.Delete(ctx, obj, client.Preconditions{UID: &obj.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %s: %w", resource, err)
	}
	return nil
}

// releaseRoleBindings deletes every RoleBinding of the workflow's attempts that no live record
// accounts for. Issuance creates a binding before the status that records it is saved; when that
// save is lost (the controller stopped, or the write failed) and the attempt does not start again
// (the run was cancelled or timed out first, or ended), nothing else finds the binding while the
// Workflow exists. It runs after reconcileCredentials (so records of ended attempts are revoked)
// and after the steps started by this reconcile recorded what they were issued.
func (r *Reconciler) releaseRoleBindings(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	var list rbacv1.RoleBindingList
	// By label, not the cache index: bindings live only while their attempts do, so there are few.
	if err := r.List(ctx, &list, client.InNamespace(wf.Namespace), client.MatchingLabels{custodyv1alpha1.LabelWorkflow: wf.Name}); err != nil {
		return false, fmt.Errorf("listing RoleBindings of %s: %w", klog.KObj(wf), err)
	}
	live := map[string]bool{}
	if wf.DeletionTimestamp.IsZero() {
		for _, st := range wf.Status.Steps {
			for _, c := range st.Credentials {
				if c.RevokedAt == nil {
					live[c.Resource] = true
				}
			}
		}
	}
	for i := range list.Items {
		rb := &list.Items[i]
		if !metav1.IsControlledBy(rb, wf) || live[resourceRef(kindRoleBinding, rb.Name)] || !rb.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.revokeUnrecorded(ctx, s, rb, custodyv1alpha1.CredentialKindKubernetesRole); err != nil {
			return false, err
		}
	}
	return false, nil
}

// revokeUnrecordedCopies deletes the Secret copies of attempt n of a step that may not hold its
// grants now (one is suspended, deleted, or waits for approval) when the attempt's Job exists
// although status does not show the attempt started: a reconcile started it and its status was
// lost. Copies are not cached, so they are looked up by their deterministic names, and only then.
func (r *Reconciler) revokeUnrecordedCopies(ctx context.Context, s *scope, step *custodyv1alpha1.Step, n int32) error {
	attemptName := jobspec.Name(s.wf.Name, string(s.wf.UID), step.Name, n)
	if _, started := s.jobs[attemptName]; !started {
		return nil
	}
	for _, grant := range step.Credentials {
		cp := &metav1.PartialObjectMetadata{}
		cp.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kindSecret))
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: credentials.ResourceName(attemptName, grant)}, cp)
		if apierrors.IsNotFound(err) {
			continue // not a secret grant, or not copied
		}
		if err != nil {
			return fmt.Errorf("reading the copy of grant %s for attempt %s: %w", grant, attemptName, err)
		}
		if err := r.revokeUnrecorded(ctx, s, cp, custodyv1alpha1.CredentialKindSecret); err != nil {
			return err
		}
	}
	return nil
}

// revokeUnrecorded deletes an object that carried a credential no record accounts for (its
// issuance was never saved), with an audit line and an Event; its labels say whose it was.
func (r *Reconciler) revokeUnrecorded(ctx context.Context, s *scope, o client.Object, kind custodyv1alpha1.CredentialKind) error {
	uid := o.GetUID()
	if err := r.Delete(ctx, o, client.Preconditions{UID: &uid}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or a new object of the same name: the next reconcile looks again
		}
		return fmt.Errorf("deleting %s: %w", klog.KObj(o), err)
	}
	l := o.GetLabels()
	step, grant := l[custodyv1alpha1.LabelStep], l[credentials.LabelGrant]
	attempt, _ := strconv.ParseInt(l[custodyv1alpha1.LabelAttempt], 10, 32)
	resource := resourceRef(kindSecret, o.GetName())
	if kind == custodyv1alpha1.CredentialKindKubernetesRole {
		resource = resourceRef(kindRoleBinding, o.GetName())
	}
	c := custodyv1alpha1.IssuedCredential{Grant: grant, Kind: kind, Attempt: int32(attempt), Resource: resource}
	r.audit(ctx, "revoke", s.wf, step, c, revokedUnrecorded)
	s.grantEvent(step, grant, corev1.EventTypeWarning, custodyv1alpha1.ReasonCredentialRevoked, "Revoke",
		"Step %s attempt %d: revoked %s of grant %s, which no record accounts for (its issuance was not saved)",
		step, attempt, resource, grant)
	return nil
}

// Kinds of the objects that carry a credential, as IssuedCredential.resource names them.
const (
	kindRoleBinding = "RoleBinding"
	kindSecret      = "Secret"
)

// resourceRef is how a record names what carries a credential: "<kind>/<name>".
func resourceRef(kind, name string) string { return kind + "/" + name }

// cutResource splits a record's resource into kind and name (resourceRef's inverse).
func cutResource(resource string) (kind, name string, ok bool) {
	kind, name, ok = strings.Cut(resource, "/")
	return kind, name, ok && kind != "" && name != ""
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

// finalizeCredentials revokes whatever a deleted workflow's attempts still hold. Its status is
// not written any more, so a retry (this or the entries' revocation failed) finds them live
// again: each is audited and counted once, by a mark in the registry.
func (r *Reconciler) finalizeCredentials(ctx context.Context, wf *custodyv1alpha1.Workflow, start time.Time) error {
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
			now := r.Clock.Now()
			key := fmt.Sprintf("credential/%s/%s/%d/%s", wf.UID, st.Name, c.Attempt, c.Grant)
			if !r.registry.markRevoked(key, now) {
				continue
			}
			r.audit(ctx, "revoke", wf, st.Name, c, revokedDeleted)
			metrics.CredentialsRevoked.WithLabelValues(string(c.Kind), revokedDeleted).Inc()
			metrics.CredentialRevocation.WithLabelValues(string(c.Kind)).Observe(now.Sub(start).Seconds())
		}
	}
	return errors.Join(errs...)
}

// audit writes one structured line per issue and revoke: who did what to which attempt under
// which grant, and why. Never a credential value: there is none in these records.
func (r *Reconciler) audit(ctx context.Context, action string, wf *custodyv1alpha1.Workflow, step string,
	c custodyv1alpha1.IssuedCredential, reason string, extra ...any) {
	kv := append([]any{"action", action, "actor", ControllerName, "subject", c.SPIFFEID,
		"grant", klog.KRef(wf.Namespace, c.Grant), "kind", c.Kind, "workflow", klog.KObj(wf), "workflowUID", wf.UID,
		"step", step, "attempt", c.Attempt, "resource", c.Resource, "reason", reason}, extra...)
	ctrl.LoggerFrom(ctx).WithName("audit").Info("Credential "+action, kv...)
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
	def, _ := wf.Definition()
	return slices.Contains(custodyv1alpha1.RequestedGrants(def.AllSteps()), grant)
}

// secretToWorkflows maps a grantable Secret to the Workflows of its namespace that request or
// hold a grant of it (a change must reach live copies; a new Secret may unblock a step).
func (r *Reconciler) secretToWorkflows(ctx context.Context, o client.Object) []reconcile.Request {
	var grants custodyv1alpha1.CredentialGrantList
	if err := r.List(ctx, &grants, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing CredentialGrants for a Secret change")
		return nil
	}
	var reqs []reconcile.Request
	seen := map[client.ObjectKey]bool{}
	for i := range grants.Items {
		g := &grants.Items[i]
		if g.Spec.Credential.Secret == nil || g.Spec.Credential.Secret.Name != o.GetName() {
			continue
		}
		for _, req := range r.grantToWorkflows(ctx, g) {
			if !seen[req.NamespacedName] {
				seen[req.NamespacedName] = true
				reqs = append(reqs, req)
			}
		}
	}
	return reqs
}
