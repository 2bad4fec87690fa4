package v1alpha1

import (
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialGrantSpec says which steps of which workflows may hold one credential, for how long,
// and whether someone must approve first. It is owned by whoever owns the credential.
// +kubebuilder:validation:XValidation:rule="!has(self.credential.kubernetesRole) || !has(self.ttl) || duration(self.ttl) >= duration('10m')",message="a kubernetesRole grant's ttl must be at least 10m: the API server issues no shorter ServiceAccount token"
type CredentialGrantSpec struct {
	// subjects are the workflows and steps that may receive the credential. A step receives it
	// only if it also lists this grant in its credentials.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Subjects []GrantSubject `json:"subjects"`

	// credential is what is issued: exactly one of kubernetesRole, secret or spiffe.
	// +required
	Credential Credential `json:"credential"`

	// ttl is the longest any one issuance may live, between 1m and 24h. When it passes the
	// issuance is revoked even if the step still runs. Defaults to 15m.
	// +optional
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="ttl must be between 1m and 24h"
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// approval, when required, keeps the grant inactive until an approver approves it with the
	// annotation approve.custody.dev/grant. Changing subjects or credential, or moving expiresAt
	// later (or removing it), clears the approval.
	// +optional
	Approval *GrantApproval `json:"approval,omitempty"`

	// suspended is the kill switch: true revokes every live issuance of this grant at once and
	// issues no new ones until it is false again.
	// +optional
	Suspended bool `json:"suspended,omitempty"`

	// onRevoke is what happens to a running step that loses this grant's credential before it
	// ends: because the grant was suspended, deleted, expired or no longer covers the step, its
	// ttl passed, its source was withdrawn, or its role changed since the approval. Continue: the
	// step keeps running without it. Unset, the platform's default applies (the manager's
	// --grant-on-revoke, Continue unless the platform team chose StopStep; status.onRevoke says
	// which is in force). StopStep: the attempt is stopped (its Job
	// deleted) and fails with reason CredentialRevoked; a retry, if the step has one, is a new
	// attempt that waits for the grant like any other. Revoking a copy of a Secret cannot take
	// back a value the step already read, and an X.509 SVID stays valid until it expires: stopping
	// the step is what ends its use of them. Each issuance records the policy of its grant, so
	// that a grant deleted meanwhile still stops its steps.
	// +optional
	// +kubebuilder:validation:Enum=Continue;StopStep
	OnRevoke RevokePolicy `json:"onRevoke,omitempty"`

	// expiresAt ends the grant: from this time (RFC 3339) it issues nothing, and every live
	// issuance is revoked; no issuance outlives it. For access given for a project, a migration or
	// an incident, so that it does not outlive its purpose. Moving it later, or removing it,
	// clears the grant's approval (an approver approved access until then).
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// unusedAfter is how long the grant may issue nothing, since it was created, approved or last
	// issued, before its condition Unused turns True (with a Warning Event and the metric
	// custody_grants{condition="Unused"}): access nobody uses is access to take away. Between 1h
	// and 8760h; unset, the manager's --grant-unused-after applies (90 days by default). Set it
	// longer for a grant that a quarterly or yearly run uses. It only reports: nothing is revoked.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="unusedAfter must be between 1h and 8760h"
	UnusedAfter *metav1.Duration `json:"unusedAfter,omitempty"`
}

// Expired says whether the grant's expiresAt has come by now.
func (g *CredentialGrant) Expired(now time.Time) bool {
	return g.Spec.ExpiresAt != nil && !now.Before(g.Spec.ExpiresAt.Time)
}

// RevokePolicy is what happens to a running step whose credential is revoked before it ends.
type RevokePolicy string

const (
	// RevokeContinue lets the step run on without the credential (the default).
	RevokeContinue RevokePolicy = "Continue"
	// RevokeStopStep stops the attempt: its Job is deleted and it fails with reason
	// CredentialRevoked.
	RevokeStopStep RevokePolicy = "StopStep"
)

// StopsStep says whether a revocation under this policy stops the step.
func (p RevokePolicy) StopsStep() bool { return p == RevokeStopStep }

// OnRevokePolicy is the grant's policy in force: its spec.onRevoke, or, when that is unset, the
// platform's default (the manager's --grant-on-revoke; "" counts as Continue).
func (g *CredentialGrant) OnRevokePolicy(platformDefault RevokePolicy) RevokePolicy {
	switch {
	case g.Spec.OnRevoke != "":
		return g.Spec.OnRevoke
	case platformDefault != "":
		return platformDefault
	}
	return RevokeContinue
}

// GrantSubject selects workflows, by name or by labels, and the steps of them that may receive
// the credential.
//
// +kubebuilder:validation:XValidation:rule="has(self.workflowName) != has(self.workflowSelector)",message="set exactly one of workflowName or workflowSelector"
type GrantSubject struct {
	// workflowName is the name of a Workflow in the grant's namespace.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	WorkflowName string `json:"workflowName,omitempty"`

	// workflowSelector selects Workflows in the grant's namespace by their labels. An empty
	// selector is refused: it would match every workflow.
	// +optional
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="workflowSelector must not be empty: it would match every workflow"
	WorkflowSelector *metav1.LabelSelector `json:"workflowSelector,omitempty"`

	// steps are the names of the steps, in the selected workflows, that may receive the
	// credential. Every step must be named: there is no wildcard.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Steps []string `json:"steps"`

	// images, when set, are the only container images those steps may run and still hold the
	// credential: an exact reference (best pinned by digest,
	// registry.example.com/erp-client@sha256:...) or a prefix ending in "/*", ":*" or
	// "@sha256:*" (registry.example.com/erp-client@sha256:* is any digest of that repository).
	// A step running any other image waits with reason GrantNotCovered. Unset: any image.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^[^*\s]+(/\*|:\*|@sha256:\*)?$`
	Images []string `json:"images,omitempty"`
}

// Credential is exactly one kind of credential.
//
// +kubebuilder:validation:XValidation:rule="[has(self.kubernetesRole), has(self.secret), has(self.spiffe)].filter(x, x).size() == 1",message="set exactly one of kubernetesRole, secret or spiffe"
type Credential struct {
	// kubernetesRole binds the step attempt's own ServiceAccount to a Role or ClusterRole in the
	// grant's namespace, only while the attempt runs.
	// +optional
	KubernetesRole *KubernetesRoleCredential `json:"kubernetesRole,omitempty"`

	// secret projects selected keys of a Secret in the grant's namespace into a per-attempt copy
	// mounted only into the step container.
	// +optional
	Secret *SecretCredential `json:"secret,omitempty"`

	// spiffe adds properties to the step attempt's X.509 and JWT SVIDs.
	// +optional
	SPIFFE *SPIFFECredential `json:"spiffe,omitempty"`
}

// RoleKind is the kind of role a kubernetesRole credential binds.
// +kubebuilder:validation:Enum=Role;ClusterRole
type RoleKind string

const (
	// RoleKindRole is a Role in the grant's namespace.
	RoleKindRole RoleKind = "Role"
	// RoleKindClusterRole is a ClusterRole, bound in the grant's namespace only (RoleBinding).
	RoleKindClusterRole RoleKind = "ClusterRole"
)

// KubernetesRoleCredential binds the step's ServiceAccount to a role while the step runs.
type KubernetesRoleCredential struct {
	// kind of the role: Role or ClusterRole. A ClusterRole is bound with a RoleBinding, so it
	// grants its rules in the grant's namespace only.
	// +required
	Kind RoleKind `json:"kind"`

	// name of the Role or ClusterRole.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// audience of the projected ServiceAccount token the step gets. Defaults to the API
	// server's audience when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Audience string `json:"audience,omitempty"`
}

// SecretCredential copies selected keys of a Secret for one step attempt.
type SecretCredential struct {
	// name of the source Secret, in the grant's namespace. It must carry the label
	// custody.dev/grantable: "true".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// keys of the source Secret to copy; no other key reaches the step.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[-._a-zA-Z0-9]+$`
	Keys []string `json:"keys"`

	// maxAge raises RotationOverdue on the grant when the source Secret has not changed for
	// longer than this, between 1h and 8760h. Unset means no rotation check.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="maxAge must be between 1h and 8760h"
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// SPIFFECredential adds properties to a step attempt's SVIDs.
//
// +kubebuilder:validation:XValidation:rule="has(self.dnsNames) || has(self.federatesWith) || has(self.x509TTL) || has(self.jwtTTL) || has(self.audiences)",message="spiffe must set at least one of dnsNames, federatesWith, x509TTL, jwtTTL or audiences"
type SPIFFECredential struct {
	// dnsNames are added to the X.509 SVID's DNS SANs.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	DNSNames []string `json:"dnsNames,omitempty"`

	// federatesWith are trust domains (for example partner.example) whose bundles the step
	// receives, so it can authenticate their workloads.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9._-]+$`
	FederatesWith []string `json:"federatesWith,omitempty"`

	// x509TTL is the X.509 SVID lifetime, between 1m and 24h; the controller's cap still applies.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="x509TTL must be between 1m and 24h"
	X509TTL *metav1.Duration `json:"x509TTL,omitempty"`

	// jwtTTL is the JWT SVID lifetime, between 1m and 24h; the controller's cap still applies.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="jwtTTL must be between 1m and 24h"
	JWTTTL *metav1.Duration `json:"jwtTTL,omitempty"`

	// audiences the step is expected to request JWT SVIDs for; recorded for audit.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`
}

// GrantApproval says whether a grant needs an approval before it is active, and who may give it.
//
// +kubebuilder:validation:XValidation:rule="!self.required || has(self.approvers)",message="approvers must be set when approval is required"
// +kubebuilder:validation:XValidation:rule="!has(self.validFor) || self.required",message="validFor needs required: true"
type GrantApproval struct {
	// required keeps the grant inactive until approved.
	// +required
	Required bool `json:"required"`

	// approvers may approve. The grant's creator may not, even if listed.
	// +optional
	Approvers *Approvers `json:"approvers,omitempty"`

	// validFor makes an approval lapse this long after it was given (between 1h and 8760h): from
	// then on the grant issues nothing until an approver approves it again (a periodic access
	// review; an approver may approve it again from the last quarter of validFor, at most 14 days,
	// before the lapse, when the condition ReviewDue turns True). Issuances made before run to
	// their own end. Unset, an approval stands until the grant's subjects, credential or end
	// change. Only its approvers may lengthen or remove it.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="validFor must be between 1h and 8760h"
	ValidFor *metav1.Duration `json:"validFor,omitempty"`
}

// ApprovalLapsesAt is when the grant's recorded approval lapses under approval.validFor (nil: it
// does not, or there is none).
func (g *CredentialGrant) ApprovalLapsesAt() *time.Time {
	a := g.Spec.Approval
	if a == nil || a.ValidFor == nil || g.Status.Approval == nil {
		return nil
	}
	at := g.Status.Approval.ApprovedAt.Add(a.ValidFor.Duration)
	return &at
}

// MaxApprovalReviewWindow is the longest review window of an approval (ApprovalReviewWindow).
const MaxApprovalReviewWindow = 14 * 24 * time.Hour

// ApprovalReviewWindow is how long before an approval lapses under validFor an approver may approve
// the grant again (and ReviewDue turns True): the last quarter of validFor, at most 14 days. An
// approval given again in the window keeps the grant issuing without a gap; like the first, it
// stands for validFor from when it is given.
func ApprovalReviewWindow(validFor time.Duration) time.Duration {
	return min(validFor/4, MaxApprovalReviewWindow)
}

// ApprovalReviewFrom is when the grant's recorded approval enters its review window (nil: it
// does not lapse, or there is none).
func (g *CredentialGrant) ApprovalReviewFrom() *time.Time {
	at := g.ApprovalLapsesAt()
	if at == nil {
		return nil
	}
	from := at.Add(-ApprovalReviewWindow(g.Spec.Approval.ValidFor.Duration))
	return &from
}

// ApprovalReviewable says whether an approver may approve the grant again by now, replacing its
// recorded approval: the approval is in its review window, or lapsed.
func (g *CredentialGrant) ApprovalReviewable(now time.Time) bool {
	from := g.ApprovalReviewFrom()
	return from != nil && !now.Before(*from)
}

// ApprovalLapsed says whether the grant's recorded approval has lapsed by now.
func (g *CredentialGrant) ApprovalLapsed(now time.Time) bool {
	at := g.ApprovalLapsesAt()
	return at != nil && !now.Before(*at)
}

// CredentialGrantStatus is the observed state of a grant.
type CredentialGrantStatus struct {
	// observedGeneration is the generation the controller last fully reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Approved, ReviewDue, RotationOverdue, Unused, BroadAccess, Unprotected, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// approval records who approved the grant's current subjects and credential (and, for a
	// Kubernetes role, the role's rules).
	// +optional
	Approval *GrantApprovalRecord `json:"approval,omitempty"`

	// active is the number of live issuances (written as 0 too, so that kubectl's ACTIVE column
	// says 0 rather than nothing).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Active int32 `json:"active"`

	// activeIssuances lists live issuances, at most 100; active counts them all.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	ActiveIssuances []Issuance `json:"activeIssuances,omitempty"`

	// issuedTotal counts the issuances of this grant recorded in the Workflows of the namespace
	// that still exist (a Workflow's records go with it; the audit log keeps every one).
	// +optional
	// +kubebuilder:validation:Minimum=0
	IssuedTotal int64 `json:"issuedTotal,omitempty"`

	// revokedTotal counts the revoked issuances among those.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RevokedTotal int64 `json:"revokedTotal,omitempty"`

	// lastIssuedTime is when the grant last issued a credential.
	// +optional
	LastIssuedTime *metav1.Time `json:"lastIssuedTime,omitempty"`

	// lastRevokedTime is when an issuance of the grant was last revoked.
	// +optional
	LastRevokedTime *metav1.Time `json:"lastRevokedTime,omitempty"`

	// sourceChangedTime is when the controller last saw the source Secret's data change (kind
	// secret only); maxAge is measured from it.
	// +optional
	SourceChangedTime *metav1.Time `json:"sourceChangedTime,omitempty"`

	// onRevoke is the policy in force for the grant's issuances: spec.onRevoke, or the platform's
	// default (the manager's --grant-on-revoke) when that is unset.
	// +optional
	// +kubebuilder:validation:Enum=Continue;StopStep
	OnRevoke RevokePolicy `json:"onRevoke,omitempty"`
}

// GrantApprovalRecord is what the controller recorded about a grant's approval: who approved and
// when, and, for a grant that hands out a Kubernetes role, which rules the role had then.
type GrantApprovalRecord struct {
	ApprovalRecord `json:",inline"`

	// roleRules is a digest of the rules of the grant's Role or ClusterRole when it was approved
	// (sha256, over the rules in a canonical order; a role that did not exist has no rules), as
	// admission read them while stamping the approval (for an approval stamped without one, as
	// the controller first read them). The approval stands while the role allows nothing more than
	// these rules did (approvedRules; with the digest alone, while the rules are these).
	// +optional
	// +kubebuilder:validation:MaxLength=80
	RoleRules string `json:"roleRules,omitempty"`

	// approvedRules are those rules (the ones whose digest is roleRules), as the controller read
	// them. The approval covers what they allow: a change of the role that allows nothing more
	// (a rule removed or narrowed) keeps it; one that allows more voids it, and the grant's
	// Approved condition names what was added. Absent when the controller read the role only
	// after it had changed again (then any change voids the approval), or for a role of more
	// than 256 rules.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	ApprovedRules []rbacv1.PolicyRule `json:"approvedRules,omitempty"`
}

// Issuance is one live issuance of a grant to a step attempt: metadata only.
type Issuance struct {
	// workflow is the Workflow's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Workflow string `json:"workflow"`

	// step is the step's name.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Step string `json:"step"`

	// attempt is the step attempt.
	// +required
	// +kubebuilder:validation:Minimum=1
	Attempt int32 `json:"attempt"`

	// spiffeID is the identity holding the credential.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	SPIFFEID string `json:"spiffeID,omitempty"`

	// issuedAt is when it was issued.
	// +required
	IssuedAt metav1.Time `json:"issuedAt"`

	// expiresAt is when it expires at the latest.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// CredentialGrant says which steps of which workflows may hold one credential and for how long.
// Custody issues it just in time to each covered step attempt and revokes it when the attempt
// ends, when the ttl passes, or when the grant is suspended.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cgrant,categories=custody
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Approved",type=string,JSONPath=`.status.conditions[?(@.type=="Approved")].status`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.active`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspended`
// +kubebuilder:printcolumn:name="TTL",type=string,JSONPath=`.spec.ttl`
// +kubebuilder:printcolumn:name="Expires",type=date,priority=1,JSONPath=`.spec.expiresAt`
// +kubebuilder:printcolumn:name="Last Issued",type=date,priority=1,JSONPath=`.status.lastIssuedTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type CredentialGrant struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is who may hold the credential and how.
	// +required
	Spec CredentialGrantSpec `json:"spec"`

	// status is what the controller observed. It defaults to observedGeneration 0, so that
	// kstatus (Flux) reads a new object as InProgress, not Current, until the controller saw it.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status CredentialGrantStatus `json:"status,omitempty"`
}

// CredentialGrantList is a list of CredentialGrants.
//
// +kubebuilder:object:root=true
type CredentialGrantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CredentialGrant `json:"items"`
}
