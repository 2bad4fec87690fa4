package webhook

import (
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestRenewingALapsedApproval: once a grant's approval is in its review window (the last quarter of
// approval.validFor) or lapsed, an approver may approve it again, which replaces the old record;
// before that, or by the grant's creator, the approval cannot be changed.
func TestRenewingALapsedApproval(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	k := custodyv1alpha1.AnnotationApproveGrant
	grantApprovedAt := func(at time.Time) *object {
		g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp", Namespace: "finance",
			Annotations: map[string]string{k: stamp("bob", at)}}}
		g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, ValidFor: &metav1.Duration{Duration: time.Hour},
			Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob", "carol"}}}
		g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob", ApprovedAt: metav1.NewTime(at)}}
		return &object{meta: &g.ObjectMeta, grant: g, kind: "CredentialGrant", forDenial: "CredentialGrant finance/erp"}
	}
	approvedBy := func(old *object, user string) *object {
		cur := &object{grant: old.grant.DeepCopy(), kind: old.kind, forDenial: old.forDenial}
		cur.meta = &cur.grant.ObjectMeta
		cur.meta.Annotations[k] = stamp(user, now)
		return cur
	}
	req := func(user string) admission.Request {
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UserInfo: authenticationv1.UserInfo{Username: user}}}
	}
	// validFor 1h: the review window is its last quarter, 15 minutes.
	lapsed, current := grantApprovedAt(now.Add(-2*time.Hour)), grantApprovedAt(now.Add(-30*time.Minute))
	due := grantApprovedAt(now.Add(-50 * time.Minute))
	for _, tc := range []struct {
		name string
		old  *object
		user string
		want string // "": allowed
	}{
		{"an approver, after the lapse", lapsed, "carol", ""},
		{"the same approver again, after the lapse", lapsed, "bob", ""},
		{"an approver, in the review window", due, "carol", ""},
		{"an approver, before the review window", current, "carol",
			"its approval by bob stands until 2026-12-01T12:30:00Z (approval.validFor); an approver may approve it again from 2026-12-01T12:15:00Z"},
		{"the creator, in the review window", due, "alice", "was created by alice, who may not approve it"},
		{"the creator, after the lapse", lapsed, "alice", "was created by alice, who may not approve it"},
		{"someone else, after the lapse", lapsed, "mallory", "mallory may not approve"},
	} {
		r := approvalsOfGrant(req(tc.user), approvedBy(tc.old, tc.user), tc.old, "alice", false, now, false)
		switch {
		case tc.want == "" && r != nil:
			t.Errorf("%s: refused: %s", tc.name, r.resp.Result.Message)
		case tc.want != "" && (r == nil || !strings.Contains(r.resp.Result.Message, tc.want)):
			t.Errorf("%s: %+v, want refused with %q", tc.name, r, tc.want)
		}
	}
	if d := renewals(approvalDiff{changed: []string{k}}, lapsed, now, false); len(d.changed) != 0 || len(d.added) != 1 {
		t.Errorf("renewals of a lapsed approval: %+v, want it added", d)
	}
	if d := renewals(approvalDiff{changed: []string{k}}, due, now, false); len(d.changed) != 0 || len(d.added) != 1 {
		t.Errorf("renewals of an approval due for review: %+v, want it added", d)
	}
	if d := renewals(approvalDiff{changed: []string{k}}, current, now, false); len(d.changed) != 1 || len(d.added) != 0 {
		t.Errorf("renewals of a current approval: %+v, want it changed", d)
	}
}

// TestShortenedApprovalLapses: setting or shortening approval.validFor warns when the approval on
// record would lapse at once, or be due for review at once; not otherwise.
func TestShortenedApprovalLapses(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	grant := func(validFor time.Duration, approvedAgo time.Duration) *custodyv1alpha1.CredentialGrant {
		g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp", Namespace: "finance"}}
		g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true}
		if validFor > 0 {
			g.Spec.Approval.ValidFor = &metav1.Duration{Duration: validFor}
		}
		if approvedAgo > 0 {
			g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{
				ApprovedBy: "bob", ApprovedAt: metav1.NewTime(now.Add(-approvedAgo))}}
		}
		return g
	}
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name     string
		old, cur *custodyv1alpha1.CredentialGrant
		want     string // "": no warning
	}{
		{"validFor set on an approval older than it", grant(0, 200*day), grant(90*day, 200*day),
			"CredentialGrant erp: its approval by bob, given at 2026-05-15T12:00:00Z, lapses at once under approval.validFor 2160h0m0s: " +
				"it issues nothing, and the steps that request it wait, until an approver approves it again"},
		{"validFor set, the approval in its review window", grant(0, 80*day), grant(90*day, 80*day),
			"CredentialGrant erp: its approval by bob, given at 2026-09-12T12:00:00Z, is due for review at once under approval.validFor " +
				"2160h0m0s: it lapses at 2026-12-11T12:00:00Z unless an approver approves it again"},
		{"validFor shortened below the approval's age", grant(180*day, 100*day), grant(90*day, 100*day), "lapses at once"},
		{"validFor set, the approval recent", grant(0, 10*day), grant(90*day, 10*day), ""},
		{"validFor lengthened", grant(30*day, 100*day), grant(90*day, 100*day), ""},
		{"validFor unchanged", grant(90*day, 100*day), grant(90*day, 100*day), ""},
		{"the approval had lapsed already", grant(90*day, 100*day), grant(60*day, 100*day), ""},
		{"nothing approved yet", grant(0, 0), grant(90*day, 0), ""},
	} {
		got := shortenedApprovalLapses(tc.old, tc.cur, now)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
