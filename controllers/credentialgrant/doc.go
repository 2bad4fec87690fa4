// Package credentialgrant holds the CredentialGrant reconciler: it records a grant's approval,
// says whether the grant can issue (Ready, Approved), and lists the issuances live now. The
// Workflow reconciler issues and revokes (see docs/credentials.md).
//
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=list;watch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/status,verbs=patch
package credentialgrant
