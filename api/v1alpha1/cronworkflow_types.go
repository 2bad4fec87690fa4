package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConcurrencyPolicy says what a CronWorkflow does when a run is due while an earlier run is still
// running.
// +kubebuilder:validation:Enum=Allow;Forbid;Replace
type ConcurrencyPolicy string

const (
	// ConcurrencyAllow starts the new run alongside the running ones.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
	// ConcurrencyForbid skips the new run (Event RunSkipped) while an earlier run is running.
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace cancels the running runs (spec.cancel, so their credentials are revoked
	// and their finally steps run) and starts the new one.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
)

// CronWorkflowSpec says when to create runs and what they run.
type CronWorkflowSpec struct {
	// schedule in standard cron syntax (five fields: minute hour day-of-month month day-of-week,
	// or a descriptor such as @hourly or @daily).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Schedule string `json:"schedule"`

	// timeZone is the IANA time zone the schedule is read in (for example Europe/Berlin). Unset
	// means UTC. Where the clock changes, a schedule at fixed times of day (its minute and hour are
	// not wildcards) runs as cron does: once when the clock goes back over its time, and at the
	// moment of the change when the clock goes forward over it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	TimeZone *string `json:"timeZone,omitempty"`

	// concurrencyPolicy: Allow (default), Forbid or Replace.
	// +optional
	// +kubebuilder:default=Allow
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// startingDeadlineSeconds is how late a run may still start after its scheduled time (for
	// example after the controller was down). A schedule missed by longer is skipped (Event
	// MissedSchedule). Unset means no deadline. Whatever the deadline, at most one run is created
	// for the missed schedules: the most recent one. At least 10: a run starts moments after its
	// time (a second or more on a busy controller), so a shorter deadline would skip most runs.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 10",message="startingDeadlineSeconds must be at least 10 (or unset): a run starts moments after its scheduled time, and a shorter deadline would skip it"
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

	// suspend stops creating runs; running runs continue. Schedules that pass while suspended are
	// not made up later.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// successfulRunsHistoryLimit is how many succeeded runs to keep (default 3); older ones are
	// deleted.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`

	// failedRunsHistoryLimit is how many failed or cancelled runs to keep (default 1); older ones
	// are deleted.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`

	// workflowSpec is the spec of every run: a workflowTemplateRef with parameter values, or
	// inline steps.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(self.cancel) || !self.cancel",message="a CronWorkflow's workflowSpec cannot set cancel; set suspend to stop creating runs"
	// +kubebuilder:validation:XValidation:rule="!has(self.reuseFrom)",message="a CronWorkflow's workflowSpec cannot set reuseFrom: each scheduled run runs every step"
	// +kubebuilder:validation:XValidation:rule="!has(self.suspend) || !self.suspend",message="a CronWorkflow's workflowSpec cannot set suspend (its runs would never start); set the CronWorkflow's own suspend to stop creating runs"
	WorkflowSpec WorkflowSpec `json:"workflowSpec"`
}

// RunReference names a run a CronWorkflow created.
type RunReference struct {
	// name of the Workflow.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// scheduledTime is the schedule the run was created for.
	// +required
	ScheduledTime metav1.Time `json:"scheduledTime"`
}

// ObservedSchedule is a schedule and time zone as the controller first saw them, and when.
type ObservedSchedule struct {
	// schedule as spec.schedule had it.
	// +kubebuilder:validation:MaxLength=128
	Schedule string `json:"schedule"`

	// timeZone as spec.timeZone had it (empty: UTC).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`

	// since is when the controller first counted times from them: the CronWorkflow's creation, or
	// the reconcile that saw them changed.
	Since metav1.Time `json:"since"`
}

// CronWorkflowStatus is what the controller observed of a CronWorkflow.
type CronWorkflowStatus struct {
	// observedGeneration is the generation the controller last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// active are the runs that have not finished.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Active []RunReference `json:"active,omitempty"`

	// lastScheduleTime is the scheduled time of the last run created.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastSuccessfulTime is when the last successful run finished.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// lastSuccessfulRun is the name of the last successful run.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	LastSuccessfulRun string `json:"lastSuccessfulRun,omitempty"`

	// schedule is the schedule and time zone the controller counts scheduled times from, and since
	// when: a changed schedule counts from the change, so that no run is made for a time it names
	// that had already passed.
	// +optional
	Schedule *ObservedSchedule `json:"schedule,omitempty"`

	// nextScheduleTime is the next time a run is due (unset while suspended).
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// conditions: Ready (True while scheduling, False with reason Suspended), Stalled (True with
	// reason InvalidSchedule or InvalidSpec when the controller cannot schedule it).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CronWorkflow creates Workflows on a schedule, from a WorkflowTemplate or an inline spec. Runs
// are named <cronworkflow>-<minutes since the epoch of the scheduled time>, so a schedule never
// makes two runs, even across controller restarts, and are labelled
// custody.dev/cronworkflow: <name>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ccwf,categories=custody
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52",message="a CronWorkflow name must be at most 52 characters: its runs are named <name>-<minutes since the epoch>, at most 63"
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Last Schedule",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type CronWorkflow struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says when to create runs and what they run.
	// +required
	Spec CronWorkflowSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status CronWorkflowStatus `json:"status,omitempty"`
}

// CronWorkflowList is a list of CronWorkflows.
//
// +kubebuilder:object:root=true
type CronWorkflowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CronWorkflow `json:"items"`
}

// ScheduledTime is the time a CronWorkflow created this run for (AnnotationScheduledTime), or its
// creation time when it carries none.
func (wf *Workflow) ScheduledTime() time.Time {
	if t, err := time.Parse(time.RFC3339, wf.Annotations[AnnotationScheduledTime]); err == nil {
		return t
	}
	return wf.CreationTimestamp.Time
}

// RunLabels are the labels of every run the CronWorkflow creates: LabelCronWorkflow with its
// name, and LabelTemplate with its template's for a run of one. Grants select its runs by them.
func (cw *CronWorkflow) RunLabels() map[string]string {
	labels := map[string]string{LabelCronWorkflow: cw.Name}
	if ref := cw.Spec.WorkflowSpec.WorkflowTemplateRef; ref != nil {
		labels[LabelTemplate] = ref.Name
	}
	return labels
}
