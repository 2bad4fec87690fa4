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

// approvalKeys returns the approval annotations (approve.custody.dev/...) of an object.
func approvalKeys(ann map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		if strings.HasPrefix(k, custodyv1alpha1.AnnotationApprovePrefix) {
			out[k] = v
		}
	}
	return out
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

// stampedBy returns the approver named in a stamped annotation value.
func stampedBy(v string) string {
	if rec, stamped := custodyv1alpha1.ParseApproval(v); stamped {
		return rec.ApprovedBy
	}
	return ""
}

// mayApprove says whether user may approve an object created by creator with the given
// approvers, and why not.
func mayApprove(user authenticationv1.UserInfo, creator string, approvers *custodyv1alpha1.Approvers, what string) string {
	switch {
	case creator == "":
		return fmt.Sprintf("%s has no recorded creator (annotation %s), so four-eyes cannot be checked; "+
			"it was created before the admission webhook was installed: create it again",
			what, custodyv1alpha1.AnnotationCreatedBy)
	case user.Username == creator:
		return fmt.Sprintf("%s was created by %s, who may not approve it: an approval must come from someone else (four-eyes)",
			what, creator)
	case approvers == nil || !isApprover(user, approvers):
		return fmt.Sprintf("%s may not approve %s: the approvers are %s", user.Username, what, describeApprovers(approvers))
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
