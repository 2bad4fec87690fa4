// Package credentialgrant holds the CredentialGrant reconciler: it records a grant's approval,
// says whether the grant can issue (Ready, Approved), and lists the issuances live now. The
// Workflow reconciler issues and revokes (see docs/credentials.md).
//
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/status,verbs=get;patch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/finalizers,verbs=update
package credentialgrant
