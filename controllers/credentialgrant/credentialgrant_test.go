package credentialgrant

import (
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

func secretGrant(maxAge *metav1.Duration) *custodyv1alpha1.CredentialGrant {
	return &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp"},
		Spec: custodyv1alpha1.CredentialGrantSpec{Credential: custodyv1alpha1.Credential{
			Secret: &custodyv1alpha1.SecretCredential{Name: "erp-api", Keys: []string{"token"}, MaxAge: maxAge}}}}
}

func TestRotation(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	c, next := rotation(secretGrant(nil), now.Add(-1000*time.Hour), now)
	if c.Status != metav1.ConditionFalse || next != 0 {
		t.Errorf("no maxAge: %+v, next %s", c, next)
	}
	g := secretGrant(&metav1.Duration{Duration: 720 * time.Hour})
	c, next = rotation(g, now.Add(-700*time.Hour), now)
	if c.Status != metav1.ConditionFalse || c.Reason != custodyv1alpha1.ReasonRotatedInTime || next != 20*time.Hour+time.Second {
		t.Errorf("in time: %+v, next %s", c, next)
	}
	c, _ = rotation(g, now.Add(-721*time.Hour), now)
	if c.Status != metav1.ConditionTrue || c.Reason != custodyv1alpha1.ReasonRotationOverdue {
		t.Errorf("overdue: %+v", c)
	}
}

func TestConditions(t *testing.T) {
	g := secretGrant(nil)
	conds := conditions(g, nil, nil, time.Now())
	if conds[0].Status != metav1.ConditionTrue || conds[1].Status != metav1.ConditionTrue || conds[1].Reason != custodyv1alpha1.ReasonActive {
		t.Errorf("usable grant: %+v", conds)
	}
	conds = conditions(g, &credentials.Refusal{Reason: custodyv1alpha1.ReasonSourceNotGrantable, Message: "m"}, nil, time.Now())
	if conds[1].Status != metav1.ConditionFalse || conds[1].Reason != custodyv1alpha1.ReasonSourceNotGrantable {
		t.Errorf("source refused: %+v", conds)
	}
	// Nothing changes until someone fixes the source: Stalled, which kstatus reads as Failed.
	if s := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled); s == nil || s.Status != metav1.ConditionTrue ||
		s.Reason != custodyv1alpha1.ReasonSourceNotGrantable {
		t.Errorf("source refused, Stalled: %+v", conds)
	}
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob"}}}
	conds = conditions(g, nil, nil, time.Now())
	if conds[0].Status != metav1.ConditionFalse || conds[1].Reason != custodyv1alpha1.ReasonWaitingForApproval ||
		conds[0].Message != "Waiting for approval by user bob: kubectl custody approve grant "+g.Name+" (the annotation approve.custody.dev/grant)" {
		t.Errorf("unapproved: %+v", conds)
	}
	if meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled) != nil {
		t.Errorf("waiting for approval is not stalled: %+v", conds)
	}
	g.Spec.Suspended = true
	if conds = conditions(g, nil, nil, time.Now()); conds[1].Reason != custodyv1alpha1.ReasonSuspended || meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled) != nil {
		t.Errorf("suspended: %+v", conds)
	}
	// Past its expiresAt a grant waits for nothing that will come: Stalled (Argo CD Degraded), so
	// that it is removed (or extended, with its approval again).
	g.Spec.Suspended, g.Spec.Approval = false, nil
	end := time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC)
	g.Spec.ExpiresAt = &metav1.Time{Time: end}
	if conds = conditions(g, nil, nil, end.Add(-time.Second)); conds[1].Reason != custodyv1alpha1.ReasonActive {
		t.Errorf("before its end: %+v", conds)
	}
	conds = conditions(g, nil, nil, end)
	if conds[1].Status != metav1.ConditionFalse || conds[1].Reason != custodyv1alpha1.ReasonExpired ||
		!strings.HasPrefix(conds[1].Message, "Expired at 2026-12-24T18:00:00Z (spec.expiresAt): no issuance is made") {
		t.Errorf("at its end: %+v", conds)
	}
	if s := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled); s == nil || s.Reason != custodyv1alpha1.ReasonExpired {
		t.Errorf("expired, Stalled: %+v", conds)
	}
}

// TestUnused: a grant is Unused once it has issued nothing for longer than its unusedAfter (else
// the manager's), counted from the last of its creation, approval and issuance; until then the
// condition says when, and the controller looks again just after.
func TestUnused(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	at := func(ago time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(-ago)} }
	grant := func(created time.Duration, approved, issued *metav1.Time, own *metav1.Duration) *custodyv1alpha1.CredentialGrant {
		g := secretGrant(nil)
		g.CreationTimestamp = *at(created)
		g.Spec.UnusedAfter = own
		if approved != nil {
			g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob", ApprovedAt: *approved}}
		}
		g.Status.LastIssuedTime = issued
		return g
	}
	for _, tc := range []struct {
		name    string
		g       *custodyv1alpha1.CredentialGrant
		after   time.Duration
		want    metav1.ConditionStatus // "": no condition
		message string
		next    time.Duration
	}{
		{"nothing set", grant(400*day, nil, nil, nil), 0, "", "", 0},
		{"never issued, created long ago", grant(91*day, nil, nil, nil), 90 * day, metav1.ConditionTrue,
			"Issued nothing since it was created at 2026-09-01T12:00:00Z, for longer than 90 days", 0},
		{"never issued, created lately", grant(10*day, nil, nil, nil), 90 * day, metav1.ConditionFalse,
			"Since it was created at 2026-11-21T12:00:00Z; Unused from 2027-02-19T12:00:00Z", 80*day + time.Second},
		{"issued lately", grant(400*day, nil, at(day), nil), 90 * day, metav1.ConditionFalse,
			"Since it last issued a credential at 2026-11-30T12:00:00Z", 89*day + time.Second},
		{"issued long ago", grant(400*day, nil, at(100*day), nil), 90 * day, metav1.ConditionTrue,
			"since it last issued a credential at 2026-08-23T12:00:00Z", 0},
		{"approved after its last issuance", grant(400*day, at(5*day), at(100*day), nil), 90 * day, metav1.ConditionFalse,
			"Since it was approved at 2026-11-26T12:00:00Z", 85*day + time.Second},
		{"its own, longer", grant(400*day, nil, at(100*day), &metav1.Duration{Duration: 8760 * time.Hour}), 90 * day,
			metav1.ConditionFalse, "Unused from 2027-08-23T12:00:00Z", 265*day + time.Second},
		{"its own, with the manager's off", grant(3*day, nil, nil, &metav1.Duration{Duration: 48 * time.Hour}), 0,
			metav1.ConditionTrue, "for longer than 2 days", 0},
	} {
		c, next := unused(tc.g, tc.after, now)
		switch {
		case tc.want == "" && c != nil:
			t.Errorf("%s: %+v, want no condition", tc.name, c)
		case tc.want == "":
		case c == nil || c.Type != custodyv1alpha1.ConditionUnused || c.Status != tc.want || !strings.Contains(c.Message, tc.message) ||
			next != tc.next:
			t.Errorf("%s: %+v, next %s; want %s with %q, next %s", tc.name, c, next, tc.want, tc.message, tc.next)
		}
	}
}

// TestConditionsOfALapsedApproval: a lapsed approval is Approved=False ApprovalExpired and keeps
// the grant from issuing like a missing one (Ready=False WaitingForApproval, not Stalled).
func TestConditionsOfALapsedApproval(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	g := secretGrant(nil)
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, ValidFor: &metav1.Duration{Duration: 720 * time.Hour},
		Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob"}}}
	g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob", ApprovedAt: metav1.NewTime(now.Add(-721 * time.Hour))}}
	conds := conditions(g, nil, nil, now)
	approved := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionApproved)
	ready := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionReady)
	if approved == nil || approved.Status != metav1.ConditionFalse || approved.Reason != custodyv1alpha1.ReasonApprovalExpired ||
		!strings.Contains(approved.Message, "the approval lapsed at 2026-12-01T11:00:00Z (approval.validFor 30 days)") {
		t.Errorf("Approved %+v", approved)
	}
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != custodyv1alpha1.ReasonWaitingForApproval ||
		meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled) != nil {
		t.Errorf("conditions %+v, want Ready=False WaitingForApproval and no Stalled", conds)
	}
	g.Status.Approval.ApprovedAt = metav1.NewTime(now.Add(-719 * time.Hour))
	if c := meta.FindStatusCondition(conditions(g, nil, nil, now), custodyv1alpha1.ConditionApproved); c == nil ||
		c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "until 2026-12-01T13:00:00Z (approval.validFor)") {
		t.Errorf("an hour before the lapse: %+v", c)
	}
}

// TestReviewDue: a grant whose approval lapses under approval.validFor is due for review in the
// last quarter of validFor (at most 14 days) before the lapse, and after it; the controller looks
// again when the window opens. No condition without a validFor or an approval.
func TestReviewDue(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	grant := func(validFor time.Duration, approvedAgo time.Duration) *custodyv1alpha1.CredentialGrant {
		g := secretGrant(nil)
		g.Name = "erp"
		g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob"}}}
		if validFor > 0 {
			g.Spec.Approval.ValidFor = &metav1.Duration{Duration: validFor}
		}
		if approvedAgo >= 0 {
			g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{
				ApprovedBy: "bob", ApprovedAt: metav1.NewTime(now.Add(-approvedAgo))}}
		}
		return g
	}
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name     string
		g        *custodyv1alpha1.CredentialGrant
		want     metav1.ConditionStatus // "": no condition
		reason   string
		message  string
		nextLook time.Duration
	}{
		{"no validFor", grant(0, time.Hour), "", "", "", 0},
		{"not approved", grant(30*day, -1), "", "", "", 0},
		{"30 days, approved 22 days ago: the window (7.5 days) opens in 12h", grant(30*day, 22*day), metav1.ConditionFalse,
			custodyv1alpha1.ReasonReviewNotDue, "until 2026-12-09T12:00:00Z (approval.validFor 30 days); review due from 2026-12-02T00:00:00Z",
			12*time.Hour + time.Second},
		{"30 days, approved 23 days ago", grant(30*day, 23*day), metav1.ConditionTrue, custodyv1alpha1.ReasonApprovalLapsesSoon,
			"the approval lapses at 2026-12-08T12:00:00Z (approval.validFor 30 days), and then the grant issues nothing: an approver " +
				"approves it again before then to keep it issuing without a gap: kubectl custody approve grant erp", 0},
		{"a year, 14 days before the lapse at most", grant(365*day, 350*day), metav1.ConditionFalse, custodyv1alpha1.ReasonReviewNotDue,
			"review due from 2026-12-02T12:00:00Z", day + time.Second},
		{"lapsed", grant(30*day, 31*day), metav1.ConditionTrue, custodyv1alpha1.ReasonApprovalExpired,
			"the approval lapsed at 2026-11-30T12:00:00Z (approval.validFor 30 days): the grant issues nothing until an approver approves it again", 0},
	} {
		c, next := review(tc.g, now)
		switch {
		case tc.want == "" && c != nil:
			t.Errorf("%s: %+v, want no condition", tc.name, c)
		case tc.want != "" && (c == nil || c.Status != tc.want || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) ||
			next != tc.nextLook):
			t.Errorf("%s: %+v, next look in %s; want %s %s with %q, next look in %s", tc.name, c, next, tc.want, tc.reason, tc.message, tc.nextLook)
		}
	}
}

// TestRecordKeepsTheLastIssuance: the last issued and revoked times never move back when the
// Workflow that held the last issuance is deleted (Unused counts from them).
func TestRecordKeepsTheLastIssuance(t *testing.T) {
	at := func(h int) metav1.Time { return metav1.NewTime(time.Date(2026, 12, 1, h, 0, 0, 0, time.UTC)) }
	run := func(name string, issued, revoked metav1.Time) custodyv1alpha1.Workflow {
		wf := custodyv1alpha1.Workflow{}
		wf.Name = name
		wf.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "call", Credentials: []custodyv1alpha1.IssuedCredential{
			{Grant: "erp", Attempt: 1, IssuedAt: issued, RevokedAt: &revoked}}}}
		return wf
	}
	g := secretGrant(nil)
	record(g, []custodyv1alpha1.Workflow{run("a", at(8), at(9)), run("b", at(10), at(11))})
	if !g.Status.LastIssuedTime.Equal(ptrTime(at(10))) || !g.Status.LastRevokedTime.Equal(ptrTime(at(11))) || g.Status.IssuedTotal != 2 {
		t.Fatalf("status %+v", g.Status)
	}
	record(g, []custodyv1alpha1.Workflow{run("a", at(8), at(9))}) // b was deleted
	if !g.Status.LastIssuedTime.Equal(ptrTime(at(10))) || !g.Status.LastRevokedTime.Equal(ptrTime(at(11))) || g.Status.IssuedTotal != 1 {
		t.Errorf("after the last run was deleted: status %+v, want the last times kept", g.Status)
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// TestApprovalRecordsTheRules: the grant's status records the rules of its role as approved (when
// they are the ones whose digest admission stamped, or the first the controller reads of an
// approval stamped without one), keeps them while the role changes, and records anew for a new
// approval; rules read after the role changed since the stamp are not taken for approved ones.
func TestApprovalRecordsTheRules(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	cm := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}
	wider := append(slices.Clone(cm), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
	g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "configs"}}
	g.Spec.Credential.KubernetesRole = &custodyv1alpha1.KubernetesRoleCredential{Kind: custodyv1alpha1.RoleKindRole, Name: "cm-reader"}
	stamp := func(by string, rules []rbacv1.PolicyRule) {
		g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"` + by +
			`","approvedAt":"2026-12-02T11:00:00Z","roleRules":"` + credentials.RulesDigest(rules) + `"}`}
	}

	stamp("alice", cm)
	approval(g, now, cm)
	if a := g.Status.Approval; a == nil || a.ApprovedBy != "alice" || a.RoleRules != credentials.RulesDigest(cm) || !equality.Semantic.DeepEqual(a.ApprovedRules, cm) {
		t.Fatalf("approved as stamped: %+v", a)
	}
	approval(g, now, wider) // the role widened since: the record stays as approved
	if a := g.Status.Approval; !equality.Semantic.DeepEqual(a.ApprovedRules, cm) || a.RoleRules != credentials.RulesDigest(cm) {
		t.Errorf("the record changed with the role: %+v", a)
	}

	stamp("bob", cm) // approved again, but the role was widened before the controller read it
	approval(g, now, wider)
	if a := g.Status.Approval; a.ApprovedBy != "bob" || a.ApprovedRules != nil || a.RoleRules != credentials.RulesDigest(cm) {
		t.Errorf("rules read after the role changed since the stamp were recorded as approved: %+v", a)
	}

	g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"carol"}`} // stamped without a digest
	approval(g, now, wider)
	if a := g.Status.Approval; a.ApprovedBy != "carol" || a.RoleRules != credentials.RulesDigest(wider) || !equality.Semantic.DeepEqual(a.ApprovedRules, wider) {
		t.Errorf("an approval without a digest records the rules first read: %+v", a)
	}
	delete(g.Annotations, custodyv1alpha1.AnnotationApproveGrant)
	if approval(g, now, wider); g.Status.Approval != nil {
		t.Errorf("the record outlived the approval: %+v", g.Status.Approval)
	}
}
