// Package credentialgrant holds the CredentialGrant reconciler: it records a grant's approval,
// says whether the grant can issue (Ready, Approved), what a role grant's role reaches
// (BroadAccess), and lists the issuances live now. The
// Workflow reconciler issues and revokes (see docs/credentials.md).
//
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=list;watch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/status,verbs=patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;clusterroles,verbs=get
package credentialgrant
