// Package cronworkflow holds the CronWorkflow reconciler: it creates Workflows on a cron schedule,
// applies the concurrency policy, prunes finished runs beyond the history limits and reports the
// last schedule and last successful run. The rules are in docs/templates.md.
//
// +kubebuilder:rbac:groups=custody.dev,resources=cronworkflows,verbs=list;watch
// +kubebuilder:rbac:groups=custody.dev,resources=cronworkflows/status,verbs=patch
// +kubebuilder:rbac:groups=custody.dev,resources=workflows,verbs=create
// +kubebuilder:rbac:groups=custody.dev,resources=workflowtemplates,verbs=get;list;watch
//
// Runs are created by the controller, so admission checks the controller's `use` on the grants they
// request; the author's `use` was checked when the CronWorkflow (and its template) was written.
// +kubebuilder:rbac:groups=custody.dev,resources=credentialgrants,verbs=use
package cronworkflow
