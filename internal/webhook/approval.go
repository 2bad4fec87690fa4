package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// approvalKeys returns the approval and rejection annotations (approve.custody.dev/...,
// reject.custody.dev/...) of an object: both are an approver's decision, stamped by admission and
// never changed or withdrawn.
func approvalKeys(ann map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		if isRejection(k) || strings.HasPrefix(k, custodyv1alpha1.AnnotationApprovePrefix) {
			out[k] = v
		}
	}
	return out
}

// isRejection says whether an annotation key rejects a step (reject.custody.dev/<step>).
func isRejection(key string) bool {
	return strings.HasPrefix(key, custodyv1alpha1.AnnotationRejectPrefix)
}

// decisionNoun names what an annotation of approvalKeys records: "approval" or "rejection".
func decisionNoun(key string) string {
	if isRejection(key) {
		return "rejection"
	}
	return "approval"
}

// approvalDiff is how the approval annotations of an update differ from the stored ones.
type approvalDiff struct {
	added, changed, removed []string
}

func diffApprovals(oldAnn, newAnn map[string]string) approvalDiff {
	var d approvalDiff
	before, after := approvalKeys(oldAnn), approvalKeys(newAnn)
	for k, v := range after {
		old, ok := before[k]
		switch {
		case !ok:
			d.added = append(d.added, k)
		case old != v:
			d.changed = append(d.changed, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			d.removed = append(d.removed, k)
		}
	}
	sort.Strings(d.added)
	sort.Strings(d.changed)
	sort.Strings(d.removed)
	return d
}

// stamp is the value admission writes into an approval annotation: who approved and when. What
// the approver typed is replaced.
func stamp(user string, now time.Time) string {
	b, _ := json.Marshal(custodyv1alpha1.ApprovalRecord{ApprovedBy: user, ApprovedAt: metav1.NewTime(now.UTC().Truncate(time.Second))})
	return string(b)
}

// stampGrant is the value admission writes into the approval annotation of a grant that hands out
// a Kubernetes role: who approved and when, and the digest of the role's rules then, which the
// approval covers.
func stampGrant(user string, now time.Time, roleRules string) string {
	b, _ := json.Marshal(custodyv1alpha1.GrantApprovalRecord{RoleRules: roleRules,
		ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: user, ApprovedAt: metav1.NewTime(now.UTC().Truncate(time.Second))}})
	return string(b)
}

// stampRejection is the value admission writes into a rejection annotation: who rejected and
// when, and the value the approver gave as the reason.
func stampRejection(user string, now time.Time, reason string) string {
	b, _ := json.Marshal(custodyv1alpha1.RejectionRecord{RejectedBy: user, RejectedAt: metav1.NewTime(now.UTC().Truncate(time.Second)),
		Reason: strings.TrimSpace(reason)})
	return string(b)
}

// stampedBy returns the approver named in a stamped approval or rejection annotation.
func stampedBy(key, v string) string {
	if isRejection(key) {
		if rec, stamped := custodyv1alpha1.ParseRejection(v); stamped {
			return rec.RejectedBy
		}
		return ""
	}
	if rec, stamped := custodyv1alpha1.ParseApproval(v); stamped {
		return rec.ApprovedBy
	}
	return ""
}

// mayDecide says whether user may approve (verb "approve") or reject ("reject") an object created
// by creator with the given approvers, and why not. A creator may do neither: the decision is the
// approvers'; a creator who wants their own run stopped cancels it.
func mayDecide(user authenticationv1.UserInfo, creator string, approvers *custodyv1alpha1.Approvers, what, verb string) string {
	switch {
	case creator == "":
		return fmt.Sprintf("%s has no recorded creator (annotation %s), so four-eyes cannot be checked; "+
			"it was created before the admission webhook was installed: create it again",
			what, custodyv1alpha1.AnnotationCreatedBy)
	case user.Username == creator && verb == "reject":
		return fmt.Sprintf("%s was created by %s, who may not reject it: the decision is its approvers'; "+
			"to stop your own run, cancel it (kubectl custody cancel --reason ...)", what, creator)
	case user.Username == creator:
		return fmt.Sprintf("%s was created by %s, who may not approve it: an approval must come from someone else (four-eyes)",
			what, creator)
	case approvers == nil || !isApprover(user, approvers):
		return fmt.Sprintf("%s may not %s %s: the approvers are %s", user.Username, verb, what, describeApprovers(approvers))
	}
	return ""
}

func isApprover(user authenticationv1.UserInfo, a *custodyv1alpha1.Approvers) bool {
	if slices.Contains(a.Users, user.Username) {
		return true
	}
	for _, g := range user.Groups {
		if slices.Contains(a.Groups, g) {
			return true
		}
	}
	return false
}

func describeApprovers(a *custodyv1alpha1.Approvers) string {
	if a == nil {
		return "nobody (no approvers are listed)"
	}
	var parts []string
	if len(a.Users) > 0 {
		parts = append(parts, "users "+strings.Join(a.Users, ", "))
	}
	if len(a.Groups) > 0 {
		parts = append(parts, "members of groups "+strings.Join(a.Groups, ", "))
	}
	return strings.Join(parts, " and ")
}
