package credentialgrant

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// ControllerName is the controller's name: field owner of its writes and source of its Events.
const ControllerName = "custody-credentialgrant"

// maxIssuances bounds status.activeIssuances (the API allows as many).
const maxIssuances = 64

// Reconciler keeps a CredentialGrant's status: its approval, whether it can issue (Ready), and
// the issuances live now, read from the Workflows of its namespace. Issuing and revoking is the
// Workflow reconciler's job; it watches grants, so suspending a grant revokes at once.
type Reconciler struct {
	client.Client
	// APIReader reads a Secret's metadata, uncached, to tell a Secret that did not opt in from one
	// that does not exist.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// BroadRolesNeedApproval makes grants whose role reaches beyond the step require an approval in
	// every namespace not labelled custody.dev/broad-roles-need-approval=false
	// (--broad-roles-need-approval).
	BroadRolesNeedApproval bool
	// NamespacesByName are the namespaces whose labels the controller watches, each by name with a
	// cache of its own (namespaceCaches), when the manager watches only some namespaces
	// (--watch-namespaces). Without them it watches every namespace's labels, through the
	// manager's cache. Either way a change of custody.dev/protect-step-pods or
	// custody.dev/broad-roles-need-approval reconciles the namespace's grants at once.
	NamespacesByName []string
	// UnusedAfter is how long a grant without spec.unusedAfter may issue nothing before it is
	// reported Unused (--grant-unused-after); 0 reports only grants that set their own.
	UnusedAfter time.Duration
	// DefaultOnRevoke is the onRevoke of grants that set none (--grant-on-revoke; "" is Continue),
	// recorded in their status.onRevoke.
	DefaultOnRevoke custodyv1alpha1.RevokePolicy

	namespaces namespaceCaches // of NamespacesByName
}

// Reconcile computes the grant's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	g := &custodyv1alpha1.CredentialGrant{}
	if err := r.Get(ctx, req.NamespacedName, g); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := g.DeepCopy()
	now := r.Clock.Now()

	var workflows custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &workflows, client.InNamespace(g.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing Workflows: %w", err)
	}
	record(g, workflows.Items)
	g.Status.OnRevoke = g.OnRevokePolicy(r.DefaultOnRevoke)

	source, refusal, err := r.source(ctx, g)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The namespace's labels say whether it protects step pods and whether broad roles need an
	// approval there: watched, they are in a cache, and a change of them reconciles the grant.
	nsReader := client.Reader(r.Client)
	if r.namespaces != nil {
		nsReader = r.namespaces
	}
	nsLabels, err := credentials.NamespaceLabels(ctx, nsReader, g.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	var broad *metav1.Condition
	var roleChanged *roleChange
	if g.Spec.Credential.KubernetesRole != nil {
		rules, exists, err := credentials.Role(ctx, r.APIReader, g)
		if err != nil {
			return ctrl.Result{}, err
		}
		// A change of the role reconciles the grant (roleToGrants).
		if refusal = credentials.RoleRefusal(g, exists); refusal == nil {
			broad, refusal = r.broadAccess(g, rules, nsLabels)
		}
		approval(g, now, rules)
		if changed, added := credentials.RoleChanged(g, rules); changed && exists { // a deleted role: Stalled, SourceNotFound
			roleChanged = &roleChange{added: added}
		}
	} else {
		approval(g, now, nil)
	}
	conds := conditions(g, refusal, roleChanged, now)
	var requeue time.Duration
	if end := g.Spec.ExpiresAt; end != nil && now.Before(end.Time) {
		requeue = sooner(requeue, end.Sub(now)) // Ready turns False then (the Workflows revoke by the issuances' own expiry)
	}
	if at := g.ApprovalLapsesAt(); at != nil && now.Before(*at) {
		requeue = sooner(requeue, at.Sub(now)+time.Second) // Approved and Ready turn False then
	}
	if source != nil {
		changed := credentials.SourceChanged(source)
		g.Status.SourceChangedTime = &metav1.Time{Time: changed}
		c, next := rotation(g, changed, now)
		conds = append(conds, c)
		requeue = sooner(requeue, next)
	} else {
		g.Status.SourceChangedTime = nil
		meta.RemoveStatusCondition(&g.Status.Conditions, custodyv1alpha1.ConditionRotationOverdue)
	}
	if broad != nil {
		conds = append(conds, *broad)
	} else {
		meta.RemoveStatusCondition(&g.Status.Conditions, custodyv1alpha1.ConditionBroadAccess)
	}
	conds = append(conds, protection(g, nsLabels))
	if c, next := review(g, now); c != nil {
		conds = append(conds, *c)
		requeue = sooner(requeue, next)
	} else {
		meta.RemoveStatusCondition(&g.Status.Conditions, custodyv1alpha1.ConditionReviewDue)
	}
	if c, next := unused(g, r.UnusedAfter, now); c != nil {
		conds = append(conds, *c)
		requeue = sooner(requeue, next)
	} else {
		meta.RemoveStatusCondition(&g.Status.Conditions, custodyv1alpha1.ConditionUnused)
	}
	if meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled) == nil {
		meta.RemoveStatusCondition(&g.Status.Conditions, custodyv1alpha1.ConditionStalled)
	}
	for _, c := range conds {
		c.ObservedGeneration = g.Generation
		meta.SetStatusCondition(&g.Status.Conditions, c)
	}
	g.Status.ObservedGeneration = g.Generation

	if equality.Semantic.DeepEqual(before.Status, g.Status) {
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	base := before
	if before.Status.ObservedGeneration == 0 {
		// The grant's first status: a merge patch leaves out what equals its base, and kubectl get
		// would print nothing for 0 live issuances; write it.
		base = before.DeepCopy()
		base.Status.Active = -1
	}
	if err := r.Status().Patch(ctx, g, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}),
		client.FieldOwner(ControllerName)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.Recorder != nil {
		r.events(before, g)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// record counts the grant's issuances in the Workflows of its namespace: the live ones, the
// totals and the last issued and revoked times (kept when the Workflows that held them are gone).
func record(g *custodyv1alpha1.CredentialGrant, workflows []custodyv1alpha1.Workflow) {
	var live []custodyv1alpha1.Issuance
	var lastIssued, lastRevoked *metav1.Time
	var issued, revoked int64
	for i := range workflows {
		wf := &workflows[i]
		for _, st := range wf.Status.Steps {
			for _, c := range st.Credentials {
				if c.Grant != g.Name {
					continue
				}
				issued++
				if lastIssued == nil || lastIssued.Before(&c.IssuedAt) {
					lastIssued = c.IssuedAt.DeepCopy()
				}
				if c.RevokedAt != nil {
					revoked++
					if lastRevoked == nil || lastRevoked.Before(c.RevokedAt) {
						lastRevoked = c.RevokedAt.DeepCopy()
					}
					continue
				}
				live = append(live, custodyv1alpha1.Issuance{Workflow: wf.Name, Step: st.Name, Attempt: c.Attempt,
					SPIFFEID: c.SPIFFEID, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt})
			}
		}
	}
	slices.SortFunc(live, func(a, b custodyv1alpha1.Issuance) int {
		return strings.Compare(a.Workflow+"/"+a.Step, b.Workflow+"/"+b.Step)
	})
	g.Status.Active = int32(min(len(live), 1<<30)) //nolint:gosec // bounded
	g.Status.ActiveIssuances = live[:min(len(live), maxIssuances)]
	g.Status.IssuedTotal, g.Status.RevokedTotal = issued, revoked
	// Never earlier than recorded: the Workflow that held the last issuance may be gone.
	if lastIssued != nil && (g.Status.LastIssuedTime == nil || g.Status.LastIssuedTime.Before(lastIssued)) {
		g.Status.LastIssuedTime = lastIssued
	}
	if lastRevoked != nil && (g.Status.LastRevokedTime == nil || g.Status.LastRevokedTime.Before(lastRevoked)) {
		g.Status.LastRevokedTime = lastRevoked
	}
}

// sooner is the sooner of two times to look again (0: none).
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// events says what changed in the grant's status that a person should hear about.
func (r *Reconciler) events(before, g *custodyv1alpha1.CredentialGrant) {
	if a, was := g.Status.Approval, before.Status.Approval; a != nil &&
		(was == nil || was.ApprovedBy != a.ApprovedBy || !was.ApprovedAt.Equal(&a.ApprovedAt)) {
		r.Recorder.Eventf(g, nil, corev1.EventTypeNormal, custodyv1alpha1.ReasonApproved, "Approve",
			"Grant approved by %s", g.Status.Approval.ApprovedBy)
	}
	if before.Status.Approval != nil && g.Status.Approval == nil {
		r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonApprovalCleared, "Approve",
			"Approval by %s cleared (the grant's subjects, credential or expiry changed): nothing is issued until it is approved again",
			before.Status.Approval.ApprovedBy)
	}
	if newly(before, g, custodyv1alpha1.ConditionApproved, custodyv1alpha1.ReasonApprovalExpired) != nil {
		r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonApprovalExpired, "Approve",
			"Approval by %s lapsed at %s (approval.validFor): nothing is issued until it is approved again",
			g.Status.Approval.ApprovedBy, g.ApprovalLapsesAt().UTC().Format(time.RFC3339))
	}
	if !before.Spec.Suspended && g.Spec.Suspended && readyReason(before) != custodyv1alpha1.ReasonSuspended {
		r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonSuspended, "Suspend",
			"Grant suspended: every live issuance is revoked and none is made")
	}
	if readyReason(g) == custodyv1alpha1.ReasonExpired && readyReason(before) != custodyv1alpha1.ReasonExpired {
		r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonExpired, "Expire",
			"Grant expired at %s (spec.expiresAt): every live issuance is revoked and none is made",
			g.Spec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionBroadAccess); c != nil &&
		c.Status == metav1.ConditionTrue {
		if was := meta.FindStatusCondition(before.Status.Conditions, custodyv1alpha1.ConditionBroadAccess); was == nil ||
			was.Status != metav1.ConditionTrue || was.Message != c.Message {
			r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonRoleReachesBeyondStep, "Check", "%s", c.Message)
		}
	}
	// Conditions whose message is the news, when they newly have the reason.
	const approve, check = "Approve", "Check"
	for _, w := range []struct{ typ, reason, action string }{
		{custodyv1alpha1.ConditionApproved, custodyv1alpha1.ReasonRoleChanged, approve},
		{custodyv1alpha1.ConditionReviewDue, custodyv1alpha1.ReasonApprovalLapsesSoon, approve},
		{custodyv1alpha1.ConditionRotationOverdue, custodyv1alpha1.ReasonRotationOverdue, check},
		{custodyv1alpha1.ConditionUnprotected, custodyv1alpha1.ReasonNamespaceUnprotected, check},
		{custodyv1alpha1.ConditionUnused, custodyv1alpha1.ReasonNotUsedRecently, check},
	} {
		if c := newly(before, g, w.typ, w.reason); c != nil {
			r.Recorder.Eventf(g, nil, corev1.EventTypeWarning, w.reason, w.action, "%s", c.Message)
		}
	}
}

// newly is the grant's condition of type typ when it has the reason now and did not before (nil
// otherwise).
func newly(before, g *custodyv1alpha1.CredentialGrant, typ, reason string) *metav1.Condition {
	c := meta.FindStatusCondition(g.Status.Conditions, typ)
	if c == nil || c.Reason != reason || conditionReason(before, typ) == reason {
		return nil
	}
	return c
}

// source reads a secret grant's source Secret (only grantable ones are cached) and says why it
// cannot be handed out, if it cannot.
func (r *Reconciler) source(ctx context.Context, g *custodyv1alpha1.CredentialGrant) (*corev1.Secret, *credentials.Refusal, error) {
	if g.Spec.Credential.Secret == nil {
		return nil, nil, nil
	}
	src, exists, err := credentials.Source(ctx, r.Client, r.APIReader, g)
	if err != nil {
		return nil, nil, err
	}
	return src, credentials.CheckSource(g, src, exists), nil
}

// broadAccess says whether the role of a role grant lets a step that holds it reach beyond its
// own work (credentials.Reach), and refuses such a grant that does not require an approval in a
// namespace (with these labels) that asks for one.
func (r *Reconciler) broadAccess(g *custodyv1alpha1.CredentialGrant, rules []rbacv1.PolicyRule, nsLabels map[string]string) (
	*metav1.Condition, *credentials.Refusal) {
	c := &metav1.Condition{Type: custodyv1alpha1.ConditionBroadAccess, Status: metav1.ConditionFalse,
		Reason: custodyv1alpha1.ReasonRoleWithinStep, Message: credentials.ReachMessage(g, nil)}
	reach := credentials.Reach(rules)
	if len(reach) == 0 {
		return c, nil
	}
	c.Status, c.Reason, c.Message = metav1.ConditionTrue, custodyv1alpha1.ReasonRoleReachesBeyondStep, credentials.ReachMessage(g, reach)
	if !credentials.BroadRolesNeedApproval(nsLabels, r.BroadRolesNeedApproval) {
		return c, nil
	}
	return c, credentials.ApprovalRequired(g, reach)
}

// protection says whether the grant's namespace (with these labels) protects step pods: where it
// does not, anyone who may exec into or create pods there, or get ServiceAccount tokens, reaches
// what a step holds (docs/security.md). Unprotected=True does not stop the grant from issuing.
func protection(g *custodyv1alpha1.CredentialGrant, nsLabels map[string]string) metav1.Condition {
	if credentials.StepPodsProtected(nsLabels) {
		return metav1.Condition{Type: custodyv1alpha1.ConditionUnprotected, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonNamespaceProtected, Message: fmt.Sprintf(
				"Namespace %s protects step pods (%s=true): nobody may exec into a step's pod, run a pod as its "+
					"ServiceAccount, mount what it was granted or get its token", g.Namespace, custodyv1alpha1.LabelProtectStepPods)}
	}
	return metav1.Condition{Type: custodyv1alpha1.ConditionUnprotected, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonNamespaceUnprotected, Message: credentials.UnprotectedMessage(g)}
}

// rotation says whether the source is overdue for rotation (maxAge) and when to look again.
func rotation(g *custodyv1alpha1.CredentialGrant, changed, now time.Time) (metav1.Condition, time.Duration) {
	maxAge := g.Spec.Credential.Secret.MaxAge
	if maxAge == nil {
		return metav1.Condition{Type: custodyv1alpha1.ConditionRotationOverdue, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonRotatedInTime, Message: "The grant sets no maxAge"}, 0
	}
	due := changed.Add(maxAge.Duration)
	if now.Before(due) {
		return metav1.Condition{Type: custodyv1alpha1.ConditionRotationOverdue, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonRotatedInTime,
			Message: fmt.Sprintf("Secret %s changed %s; rotation is due by %s", g.Spec.Credential.Secret.Name,
				changed.UTC().Format(time.RFC3339), due.UTC().Format(time.RFC3339))}, due.Sub(now) + time.Second
	}
	return metav1.Condition{Type: custodyv1alpha1.ConditionRotationOverdue, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonRotationOverdue,
		Message: fmt.Sprintf("Secret %s has not changed since %s, longer than the grant's maxAge of %s",
			g.Spec.Credential.Secret.Name, changed.UTC().Format(time.RFC3339), maxAge.Duration)}, 0
}

// unused says whether the grant has issued nothing for longer than its unusedAfter (else the
// manager's), counted from the last of its creation, its approval and its last issuance, and when
// to look again. No condition when neither duration is set.
func unused(g *custodyv1alpha1.CredentialGrant, after time.Duration, now time.Time) (*metav1.Condition, time.Duration) {
	if g.Spec.UnusedAfter != nil {
		after = g.Spec.UnusedAfter.Duration
	}
	if after <= 0 {
		return nil, 0
	}
	since, what := g.CreationTimestamp.Time, "it was created"
	if a := g.Status.Approval; a != nil && a.ApprovedAt.After(since) {
		since, what = a.ApprovedAt.Time, "it was approved"
	}
	if l := g.Status.LastIssuedTime; l != nil && l.After(since) {
		since, what = l.Time, "it last issued a credential"
	}
	at := since.UTC().Format(time.RFC3339)
	if due := since.Add(after); now.Before(due) {
		return &metav1.Condition{Type: custodyv1alpha1.ConditionUnused, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonUsedRecently,
			Message: fmt.Sprintf("Since %s at %s; Unused from %s if it issues nothing until then", what, at,
				due.UTC().Format(time.RFC3339))}, due.Sub(now) + time.Second
	}
	return &metav1.Condition{Type: custodyv1alpha1.ConditionUnused, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonNotUsedRecently,
		Message: fmt.Sprintf("Issued nothing since %s at %s, for longer than %s: access nobody uses is access to take away. "+
			"Delete the grant if nothing needs it any more, or set spec.unusedAfter longer if rare runs use it", what, at,
			days(after))}, 0
}

// review says whether the grant's approval is due for review (approval.validFor): in the last
// quarter of validFor (at most 14 days) before it lapses, an approver may approve it again, so that
// it issues on without a gap; and when to look again. No condition when the approval does not
// lapse, or there is none.
func review(g *custodyv1alpha1.CredentialGrant, now time.Time) (*metav1.Condition, time.Duration) {
	a := g.Spec.Approval
	lapses, from := g.ApprovalLapsesAt(), g.ApprovalReviewFrom()
	if a == nil || !a.Required || lapses == nil {
		return nil, 0
	}
	by := fmt.Sprintf("Approved by %s at %s", g.Status.Approval.ApprovedBy, g.Status.Approval.ApprovedAt.UTC().Format(time.RFC3339))
	again := "kubectl custody approve grant " + g.Name
	switch {
	case now.Before(*from):
		return &metav1.Condition{Type: custodyv1alpha1.ConditionReviewDue, Status: metav1.ConditionFalse,
			Reason: custodyv1alpha1.ReasonReviewNotDue,
			Message: fmt.Sprintf("%s, until %s (approval.validFor %s); review due from %s, when an approver may approve it again",
				by, lapses.UTC().Format(time.RFC3339), days(a.ValidFor.Duration), from.UTC().Format(time.RFC3339))}, from.Sub(now) + time.Second
	case now.Before(*lapses):
		return &metav1.Condition{Type: custodyv1alpha1.ConditionReviewDue, Status: metav1.ConditionTrue,
			Reason: custodyv1alpha1.ReasonApprovalLapsesSoon,
			Message: fmt.Sprintf("%s; the approval lapses at %s (approval.validFor %s), and then the grant issues nothing: "+
				"an approver approves it again before then to keep it issuing without a gap: %s",
				by, lapses.UTC().Format(time.RFC3339), days(a.ValidFor.Duration), again)}, 0
	default:
		return &metav1.Condition{Type: custodyv1alpha1.ConditionReviewDue, Status: metav1.ConditionTrue,
			Reason: custodyv1alpha1.ReasonApprovalExpired,
			Message: fmt.Sprintf("%s; the approval lapsed at %s (approval.validFor %s): the grant issues nothing until an "+
				"approver approves it again: %s", by, lapses.UTC().Format(time.RFC3339), days(a.ValidFor.Duration), again)}, 0
	}
}

// days writes a duration of whole days as days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

func readyReason(g *custodyv1alpha1.CredentialGrant) string {
	return conditionReason(g, custodyv1alpha1.ConditionReady)
}

// conditionReason is the reason of one of the grant's conditions ("" without it).
func conditionReason(g *custodyv1alpha1.CredentialGrant, condition string) string {
	if c := meta.FindStatusCondition(g.Status.Conditions, condition); c != nil {
		return c.Reason
	}
	return ""
}

// approval records the grant's approval from its annotation (admission stamps the approver, and for
// a role grant the digest of the role's rules; any other value is recorded as an unverified
// approval). The record follows the annotation: when admission clears it (the grant's subjects,
// credential or expiry changed), the record goes too. A role grant's approval stamped without a
// digest (by an earlier version, or without admission) records the digest of rules, the role's
// rules as read now. The rules themselves are recorded when they are the ones approved (their
// digest is the approval's), so that a later change can be compared with them.
func approval(g *custodyv1alpha1.CredentialGrant, now time.Time, rules []rbacv1.PolicyRule) {
	rec, _ := custodyv1alpha1.ParseGrantApproval(g.Annotations[custodyv1alpha1.AnnotationApproveGrant])
	if rec == nil {
		g.Status.Approval = nil
		return
	}
	digest := ""
	if g.Spec.Credential.KubernetesRole != nil {
		digest = credentials.RulesDigest(rules)
	}
	cur := g.Status.Approval
	if cur == nil || cur.ApprovedBy != rec.ApprovedBy || (!rec.ApprovedAt.IsZero() && !cur.ApprovedAt.Equal(&rec.ApprovedAt)) ||
		(rec.RoleRules != "" && rec.RoleRules != cur.RoleRules) {
		// A new approval.
		if rec.ApprovedAt.IsZero() {
			rec.ApprovedAt = metav1.Time{Time: now}
		}
		cur, g.Status.Approval = rec, rec
	}
	cur.RoleRules = cmp.Or(cur.RoleRules, digest)
	if cur.ApprovedRules == nil && digest != "" && cur.RoleRules == digest && len(rules) > 0 && len(rules) <= credentials.MaxApprovedRules {
		cur.ApprovedRules = rules
	}
}

// roleChange is how a role grant's role changed since its approval: the rules it allows beyond
// what the approval covered (nil when unknown).
type roleChange struct{ added []rbacv1.PolicyRule }

// conditions are Approved and Ready, and Stalled when the grant cannot issue until someone fixes
// it (a missing or not grantable source, a kind this version does not issue) or removes it (it
// expired). kstatus: Ready=True
// is Current, Stalled=True is Failed, anything else (waiting for approval, suspended) InProgress.
func conditions(g *custodyv1alpha1.CredentialGrant, refusal *credentials.Refusal, roleChanged *roleChange,
	now time.Time) []metav1.Condition {
	required := g.Spec.Approval != nil && g.Spec.Approval.Required
	approved := metav1.Condition{Type: custodyv1alpha1.ConditionApproved, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonApprovalNotRequired, Message: "The grant does not require an approval"}
	switch {
	case required && g.Status.Approval != nil && roleChanged != nil:
		approved.Status, approved.Reason = metav1.ConditionFalse, custodyv1alpha1.ReasonRoleChanged
		approved.Message = credentials.RoleChangedMessage(g, roleChanged.added)
	case required && g.Status.Approval != nil && g.ApprovalLapsed(now):
		approved.Status, approved.Reason = metav1.ConditionFalse, custodyv1alpha1.ReasonApprovalExpired
		approved.Message = fmt.Sprintf("Approved by %s at %s; the approval lapsed at %s (approval.validFor %s): nothing is issued "+
			"until an approver approves it again: kubectl custody approve grant %s", g.Status.Approval.ApprovedBy,
			g.Status.Approval.ApprovedAt.UTC().Format(time.RFC3339), g.ApprovalLapsesAt().UTC().Format(time.RFC3339),
			days(g.Spec.Approval.ValidFor.Duration), g.Name)
	case required && g.Status.Approval != nil:
		approved.Reason, approved.Message = custodyv1alpha1.ReasonApproved, "Approved by "+g.Status.Approval.ApprovedBy
		if at := g.ApprovalLapsesAt(); at != nil {
			approved.Message += fmt.Sprintf(" at %s, until %s (approval.validFor)", g.Status.Approval.ApprovedAt.UTC().Format(time.RFC3339),
				at.UTC().Format(time.RFC3339))
		}
	case required:
		approved.Status, approved.Reason = metav1.ConditionFalse, custodyv1alpha1.ReasonWaitingForApproval
		who := "an approver"
		if a := g.Spec.Approval.Approvers; a != nil {
			who = a.Describe()
		}
		approved.Message = fmt.Sprintf("Waiting for approval by %s: kubectl custody approve grant %s (the annotation %s)",
			who, g.Name, custodyv1alpha1.AnnotationApproveGrant)
	}
	ready := metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: custodyv1alpha1.ReasonActive, Message: fmt.Sprintf("Issuing to covered steps; %d live issuances", g.Status.Active)}
	switch {
	case g.Spec.Suspended:
		ready.Status, ready.Reason = metav1.ConditionFalse, custodyv1alpha1.ReasonSuspended
		ready.Message = "Suspended: no issuance is made, live ones are revoked"
	case g.Expired(now):
		ready.Status, ready.Reason = metav1.ConditionFalse, custodyv1alpha1.ReasonExpired
		ready.Message = fmt.Sprintf("Expired at %s (spec.expiresAt): no issuance is made, live ones are revoked; "+
			"remove the grant, or move expiresAt later (which needs its approval again)", g.Spec.ExpiresAt.UTC().Format(time.RFC3339))
	case approved.Status == metav1.ConditionFalse:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, custodyv1alpha1.ReasonWaitingForApproval, approved.Message
	case refusal != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, refusal.Reason, refusal.Message
	case !slices.Contains(credentials.Supported, credentials.Kind(g)):
		ready.Status, ready.Reason = metav1.ConditionFalse, credentials.ReasonKindNotSupported
		ready.Message = fmt.Sprintf("Credentials of kind %s are not issued by this version of Custody yet", credentials.Kind(g))
	}
	out := []metav1.Condition{approved, ready}
	if ready.Status == metav1.ConditionFalse && ready.Reason != custodyv1alpha1.ReasonSuspended &&
		ready.Reason != custodyv1alpha1.ReasonWaitingForApproval {
		out = append(out, metav1.Condition{Type: custodyv1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
			Reason: ready.Reason, Message: ready.Message})
	}
	return out
}

// SetupWithManager registers the controller: it watches grants and the Workflows of their
// namespace (whose status holds the issuances).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&custodyv1alpha1.CredentialGrant{}).
		Watches(&custodyv1alpha1.Workflow{}, handler.EnqueueRequestsFromMapFunc(r.workflowToGrants)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToGrants)).
		WatchesMetadata(&rbacv1.Role{}, handler.EnqueueRequestsFromMapFunc(r.roleToGrants(custodyv1alpha1.RoleKindRole))).
		WatchesMetadata(&rbacv1.ClusterRole{}, handler.EnqueueRequestsFromMapFunc(r.roleToGrants(custodyv1alpha1.RoleKindClusterRole)))
	// Only a change of the labels that decide something about grants and steps; every grant is
	// reconciled as the manager starts anyway.
	policyChanged := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return credentials.NamespacePolicyChanged(e.ObjectOld, e.ObjectNew) },
	}
	switch {
	case len(r.NamespacesByName) > 0:
		caches, err := newNamespaceCaches(mgr, r.NamespacesByName)
		if err != nil {
			return err
		}
		r.namespaces = caches
		for _, src := range caches.sources(handler.EnqueueRequestsFromMapFunc(r.namespaceToGrants), policyChanged) {
			b = b.WatchesRawSource(src)
		}
	default:
		b = b.WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceToGrants),
			builder.WithPredicates(policyChanged))
	}
	return b.Complete(r)
}

// namespaceToGrants maps a namespace whose custody.dev labels changed to its grants: whether it
// protects step pods, and whether their broad roles need an approval there, are theirs to say.
func (r *Reconciler) namespaceToGrants(ctx context.Context, o client.Object) []reconcile.Request {
	var list custodyv1alpha1.CredentialGrantList
	if err := r.List(ctx, &list, client.InNamespace(o.GetName())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Mapping a namespace's labels to its grants")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// roleToGrants maps a Role or ClusterRole (created, changed or deleted) to the grants that hand it
// out: whether it exists and what it reaches are theirs to say.
func (r *Reconciler) roleToGrants(kind custodyv1alpha1.RoleKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		grants, err := credentials.GrantsOfRole(ctx, r.Client, kind, o)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Mapping a role change to its grants")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(grants))
		for _, g := range grants {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(g)})
		}
		return reqs
	}
}

// workflowToGrants maps a Workflow to the grants its steps request or hold credentials of.
func (r *Reconciler) workflowToGrants(_ context.Context, o client.Object) []reconcile.Request {
	wf, ok := o.(*custodyv1alpha1.Workflow)
	if !ok {
		return nil
	}
	names := map[string]bool{}
	def, _ := wf.Definition()
	for _, g := range custodyv1alpha1.RequestedGrants(def.AllSteps()) {
		names[g] = true
	}
	for _, st := range wf.Status.Steps {
		for _, c := range st.Credentials {
			names[c.Grant] = true
		}
	}
	reqs := make([]reconcile.Request, 0, len(names))
	for n := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: wf.Namespace, Name: n}})
	}
	return reqs
}

// secretToGrants maps a (grantable) Secret to the grants of its namespace that hand it out.
func (r *Reconciler) secretToGrants(ctx context.Context, o client.Object) []reconcile.Request {
	var grants custodyv1alpha1.CredentialGrantList
	if err := r.List(ctx, &grants, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range grants.Items {
		if sc := grants.Items[i].Spec.Credential.Secret; sc != nil && sc.Name == o.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&grants.Items[i])})
		}
	}
	return reqs
}
