package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkflowTemplateSpec is a workflow definition: declared parameters and the steps. It is what a
// team keeps in Git; runs are Workflows that reference it (or CronWorkflows that create them).
//
// +kubebuilder:validation:XValidation:rule="self.steps.all(s, !has(s.dependsOn) || sets.contains(self.steps.map(t, t.name), s.dependsOn))",message="every name in dependsOn must be the name of a step of this template"
// +kubebuilder:validation:XValidation:rule="!has(self.finally) || self.finally.all(s, !has(s.dependsOn) || sets.contains(self.finally.map(t, t.name), s.dependsOn))",message="a finally step may depend only on other finally steps"
// +kubebuilder:validation:XValidation:rule="!has(self.finally) || self.finally.all(f, !self.steps.exists(s, s.name == f.name))",message="finally step names must differ from the names of steps"
type WorkflowTemplateSpec struct {
	// parameters declares the parameters a run may (or must) set. A parameter without a default is
	// required. A run that omits a required parameter, sets an undeclared one, or sets a value
	// outside allowedValues is refused at admission, or fails with reason InvalidParameters.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Parameters []ParameterSpec `json:"parameters,omitempty"`

	// steps are the steps of every run, as in a Workflow.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []Step `json:"steps"`

	// finally are steps that run after every step has ended, whatever the outcome.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Finally []Step `json:"finally,omitempty"`

	// stepDefaults apply to every step and finally step that does not set the field itself.
	// +optional
	StepDefaults *StepDefaults `json:"stepDefaults,omitempty"`

	// results are every run's named outputs, as in a Workflow: computed when the run ends, in the
	// run's status.results.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Results []WorkflowResultSpec `json:"results,omitempty"`

	// parallelism is the most steps of one run that run at once; a run's own parallelism wins.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Parallelism *int32 `json:"parallelism,omitempty"`

	// timeout bounds every run (between 1s and 720h); a run's own timeout wins.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('720h')",message="timeout must be between 1s and 720h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// imagePullSecrets name Secrets in the run's namespace that the kubelet uses to pull the
	// steps' images from private registries; a run's own imagePullSecrets replace them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	ImagePullSecrets []ImagePullSecret `json:"imagePullSecrets,omitempty"`
}

// ParameterSpec declares one parameter of a template.
//
// +kubebuilder:validation:XValidation:rule="!has(self.default) || !has(self.allowedValues) || self.default in self.allowedValues",message="default must be one of allowedValues"
type ParameterSpec struct {
	// name of the parameter, usable as $(params.<name>) and params.<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// description says what the parameter means, for the people who run the template.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Description string `json:"description,omitempty"`

	// default is the value when a run does not set one. Without a default the parameter is
	// required.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Default *string `json:"default,omitempty"`

	// allowedValues, when set, are the only values a run may give.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	AllowedValues []string `json:"allowedValues,omitempty"`

	// pattern, when set, is a regular expression (RE2 syntax) that the whole value a run gives
	// must match, as if written ^(?:pattern)$: for a value that cannot be listed, such as a
	// version (v[0-9]+\.[0-9]+\.[0-9]+) or a branch name ([A-Za-z0-9._/-]+). The default, and
	// allowedValues, must match it too.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Pattern string `json:"pattern,omitempty"`
}

// WorkflowTemplateStatus is what the controller observed of a template.
type WorkflowTemplateStatus struct {
	// observedGeneration is the generation the controller last checked.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (True when the template can run), Stalled (True when it cannot: reason
	// InvalidSpec, with the problem in the message).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// WorkflowTemplate is a reusable workflow definition: the steps and declared parameters of a
// workflow, kept in Git and run by Workflows (workflowTemplateRef) and CronWorkflows. A run copies
// the template when it starts, so editing a template changes only later runs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cwft,categories=custody
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WorkflowTemplate struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the workflow definition.
	// +required
	Spec WorkflowTemplateSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status WorkflowTemplateStatus `json:"status,omitempty"`
}

// WorkflowTemplateList is a list of WorkflowTemplates.
//
// +kubebuilder:object:root=true
type WorkflowTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowTemplate `json:"items"`
}
