// Package credentialgrant will hold the CredentialGrant reconciler (see docs/architecture.md). It
// arrives with the credential-grant issue; this package carries the RBAC markers for the access the
// manager already needs to its own kind.
//
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/status,verbs=get;patch
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants/finalizers,verbs=update
package credentialgrant
