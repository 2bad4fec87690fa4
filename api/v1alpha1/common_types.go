package v1alpha1

import (
	"encoding/json"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Approvers names who may approve a step or a grant. An approver is never the object's creator
// (four-eyes); admission enforces that and records the approver's authenticated name.
//
// +kubebuilder:validation:XValidation:rule="(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)",message="approvers must name at least one user or group"
type Approvers struct {
	// users are Kubernetes user names (as authenticated by the API server) who may approve.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`

	// groups are Kubernetes groups whose members may approve.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Groups []string `json:"groups,omitempty"`
}

// Describe names who may approve, for a message to whoever waits: "user bob or a member of group
// finance-controllers", at most three names of each kind ("and 2 more").
func (a Approvers) Describe() string {
	names := func(kind string, list []string) string {
		if len(list) > 1 {
			kind += "s"
		}
		shown := list
		if len(list) > 3 {
			shown = list[:3]
		}
		out := kind + " " + strings.Join(shown, ", ")
		if more := len(list) - len(shown); more > 0 {
			out += " and " + strconv.Itoa(more) + " more"
		}
		return out
	}
	var parts []string
	if len(a.Users) > 0 {
		parts = append(parts, names("user", a.Users))
	}
	if len(a.Groups) > 0 {
		parts = append(parts, "a member of "+names("group", a.Groups))
	}
	if len(parts) == 0 {
		return "an approver"
	}
	return strings.Join(parts, " or ")
}

// ApprovalRecord is what the controller recorded about an approval: who approved and when, as
// stamped by admission. It never contains anything the approver typed other than their identity.
type ApprovalRecord struct {
	// approvedBy is the authenticated user name of the approver.
	// +required
	// +kubebuilder:validation:MaxLength=253
	ApprovedBy string `json:"approvedBy"`

	// approvedAt is when the approval was written.
	// +required
	ApprovedAt metav1.Time `json:"approvedAt"`
}

// RejectionRecord is what the controller recorded about a rejection of a step waiting for an
// approval: who rejected it, when, and why in their words, as stamped by admission.
type RejectionRecord struct {
	// rejectedBy is the authenticated user name of the approver who rejected the step.
	// +required
	// +kubebuilder:validation:MaxLength=253
	RejectedBy string `json:"rejectedBy"`

	// rejectedAt is when the rejection was written.
	// +required
	RejectedAt metav1.Time `json:"rejectedAt"`

	// reason is why, in the approver's words (the value they gave the annotation).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason,omitempty"`
}

// CredentialKind names the kind of a credential.
// +kubebuilder:validation:Enum=KubernetesRole;Secret;SPIFFE
type CredentialKind string

const (
	// CredentialKindKubernetesRole binds the step's ServiceAccount to a Role or ClusterRole.
	CredentialKindKubernetesRole CredentialKind = "KubernetesRole"
	// CredentialKindSecret projects selected keys of a Secret into a per-step copy.
	CredentialKindSecret CredentialKind = "Secret"
	// CredentialKindSPIFFE adds properties to the step's SVID.
	CredentialKindSPIFFE CredentialKind = "SPIFFE"
)

// Author is who wrote a CronWorkflow's spec, as admission authenticated them (the value of
// AnnotationAuthorizedBy).
type Author struct {
	// User is the authenticated user name.
	User string `json:"user"`
	// Groups are the user's groups.
	Groups []string `json:"groups,omitempty"`
}

// ParseAuthor reads an AnnotationAuthorizedBy value; ok is false when it is missing or malformed.
func ParseAuthor(v string) (a Author, ok bool) {
	if err := json.Unmarshal([]byte(v), &a); err != nil || a.User == "" {
		return Author{}, false
	}
	return a, true
}

// String is the annotation value of the author.
func (a Author) String() string {
	b, _ := json.Marshal(a)
	return string(b)
}

// UnverifiedApprover is recorded when an approval annotation was not stamped by admission (a
// cluster without the webhook).
const UnverifiedApprover = "unverified"

// ParseApproval reads the value of an approval annotation (approve.custody.dev/...). Admission
// stamps it as an ApprovalRecord in JSON, and then stamped is true; any other non-empty value is an
// approval by UnverifiedApprover. An empty value is no approval (nil). ApprovedAt is zero when the
// value does not carry it.
func ParseApproval(v string) (rec *ApprovalRecord, stamped bool) {
	if strings.TrimSpace(v) == "" {
		return nil, false
	}
	rec = &ApprovalRecord{}
	if err := json.Unmarshal([]byte(v), rec); err != nil || rec.ApprovedBy == "" {
		return &ApprovalRecord{ApprovedBy: UnverifiedApprover}, false
	}
	return rec, true
}

// ParseGrantApproval reads the value of a grant's approval annotation (approve.custody.dev/grant)
// as ParseApproval does, with the digest of the role's rules admission stamped into it ("" when
// it did not).
func ParseGrantApproval(v string) (rec *GrantApprovalRecord, stamped bool) {
	a, stamped := ParseApproval(v)
	if a == nil {
		return nil, false
	}
	rec = &GrantApprovalRecord{ApprovalRecord: *a}
	if stamped {
		var digest struct {
			RoleRules string `json:"roleRules"`
		}
		if json.Unmarshal([]byte(v), &digest) == nil {
			rec.RoleRules = digest.RoleRules
		}
	}
	return rec, stamped
}

// ParseRejection reads the value of a rejection annotation (reject.custody.dev/<step>). Admission
// stamps it as a RejectionRecord in JSON, and then stamped is true. Any other value, even an empty
// one (the annotation is what rejects), is a rejection by UnverifiedApprover with the value as its
// reason. The reason comes back on one line and at most MaxRejectReasonLength characters long.
func ParseRejection(v string) (rec *RejectionRecord, stamped bool) {
	rec = &RejectionRecord{}
	if err := json.Unmarshal([]byte(v), rec); err != nil || rec.RejectedBy == "" {
		rec, stamped = &RejectionRecord{RejectedBy: UnverifiedApprover, Reason: v}, false
	} else {
		stamped = true
	}
	rec.Reason = personsReason(rec.Reason, MaxRejectReasonLength)
	return rec, stamped
}
