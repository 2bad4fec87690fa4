// Package workflow will hold the Workflow reconciler: a short Reconcile over ordered phases and a
// scope, with every condition computed in workflow_status.go (see docs/architecture.md). The
// reconciler itself arrives with the workflow-engine issue; this package carries the RBAC markers
// for the access the manager already needs to its own kind.
//
// +kubebuilder:rbac:groups=custody.dev,resources=workflows,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups=custody.dev,resources=workflows/status,verbs=get;patch
// +kubebuilder:rbac:groups=custody.dev,resources=workflows/finalizers,verbs=update
// +kubebuilder:rbac:groups=core,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
package workflow
