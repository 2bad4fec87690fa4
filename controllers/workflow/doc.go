// Package workflow holds the Workflow reconciler. Reconcile is short: it reads the Workflow,
// runs ordered phases over a scope (finished -> spec -> observe attempts -> stop -> steps ->
// outcome -> release ServiceAccounts), and computes every condition once, in workflow_status.go,
// before it patches the status. Events and metrics are recorded only after the status that
// explains them was saved.
//
// Each step attempt gets a ServiceAccount and a Job named deterministically from the workflow's
// name and UID, the step and the attempt (internal/jobspec), so a crash or a retried reconcile
// never creates a second Job for an attempt. The attempt's ServiceAccount is deleted as soon as
// the attempt ends.
//
// +kubebuilder:rbac:groups=custody.dev,resources=workflows,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups=custody.dev,resources=workflows/status,verbs=patch
// +kubebuilder:rbac:groups=custody.dev,resources=workflows/finalizers,verbs=update
// +kubebuilder:rbac:groups=core,resources=events,verbs=create;patch;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
package workflow
