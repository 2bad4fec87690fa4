package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkflowSpec is one run of a DAG of steps: inline steps, or a reference to a WorkflowTemplate
// with values for its parameters. Everything but cancel is immutable once created: a Workflow is a
// record of what ran, so a change means a new Workflow. (The immutability rules sit on
// Workflow.spec, so that a CronWorkflow can carry the same type and still be edited.)
//
// +kubebuilder:validation:XValidation:rule="has(self.steps) != has(self.workflowTemplateRef)",message="set either steps or workflowTemplateRef, not both and not neither"
// +kubebuilder:validation:XValidation:rule="!has(self.finally) || has(self.steps)",message="finally steps come from the template when workflowTemplateRef is set"
// +kubebuilder:validation:XValidation:rule="!has(self.stepDefaults) || has(self.steps)",message="stepDefaults come from the template when workflowTemplateRef is set"
// +kubebuilder:validation:XValidation:rule="!has(self.results) || has(self.steps)",message="results come from the template when workflowTemplateRef is set"
// +kubebuilder:validation:XValidation:rule="!has(self.concurrencyLimit) || has(self.concurrencyGroup)",message="concurrencyLimit needs a concurrencyGroup"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || self.steps.all(s, !has(s.dependsOn) || sets.contains(self.steps.map(t, t.name), s.dependsOn))",message="every name in dependsOn must be the name of a step of this workflow"
// +kubebuilder:validation:XValidation:rule="!has(self.finally) || self.finally.all(s, !has(s.dependsOn) || sets.contains(self.finally.map(t, t.name), s.dependsOn))",message="a finally step may depend only on other finally steps"
// +kubebuilder:validation:XValidation:rule="!has(self.finally) || !has(self.steps) || self.finally.all(f, !self.steps.exists(s, s.name == f.name))",message="finally step names must differ from the names of steps"
type WorkflowSpec struct {
	// workflowTemplateRef runs the steps of a WorkflowTemplate in the Workflow's namespace instead
	// of inline steps. The controller resolves it once, records the template's generation and
	// steps in status.template, and later edits of the template do not change this run. Runs of a
	// template carry the label custody.dev/template: <name>, which CredentialGrant subjects can
	// select.
	// +optional
	WorkflowTemplateRef *WorkflowTemplateRef `json:"workflowTemplateRef,omitempty"`

	// parameters are named values of this run. Steps use them as $(params.<name>) in args and env,
	// and as params.<name> in `when` expressions. With workflowTemplateRef, they are values for the
	// template's declared parameters (defaults fill the rest). Parameters are not secret: never
	// put a credential here; request it through a CredentialGrant instead.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Parameters []Parameter `json:"parameters,omitempty"`

	// steps are the steps of the workflow. A step runs once every step it dependsOn has ended
	// and its `when` expression (if any) is true; steps without dependencies between them run in
	// parallel. Required unless workflowTemplateRef is set.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []Step `json:"steps,omitempty"`

	// finally are steps that run after every step has ended, whatever the outcome (succeeded,
	// failed, cancelled or timed out). Their `when` sees workflow.phase, the outcome of the steps
	// (Succeeded, Failed or Cancelled), for example to notify only on failure. They may depend on
	// each other, get their own identities and grants like any step, and a failed finally step
	// fails the workflow.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Finally []Step `json:"finally,omitempty"`

	// stepDefaults apply to every step and finally step that does not set the field itself. Only
	// where the steps are written: a run of a template uses the template's.
	// +optional
	StepDefaults *StepDefaults `json:"stepDefaults,omitempty"`

	// results are the run's own named outputs, each a value made of parameters and steps' results
	// ($(params.x), $(steps.build.results.digest)), computed once the run ends and written to
	// status.results, for whoever started it (a pipeline, kubectl custody wait). Only where the
	// steps are written: a run of a template has the template's. Like step results, they are
	// visible to anyone who can read the Workflow: never credentials.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Results []WorkflowResultSpec `json:"results,omitempty"`

	// parallelism is the most steps (including finally steps) that run at once; a step whose turn
	// comes while the limit is reached waits in Pending, and a retry waits for a free slot too.
	// Between 1 and 64; unset means no limit (or the template's).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Parallelism *int32 `json:"parallelism,omitempty"`

	// timeout bounds the whole run: when it passes, running steps are stopped and the Workflow
	// fails with reason TimedOut. Between 1s and 720h (30 days); unset means no workflow timeout
	// (each step's own timeout still applies).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('720h')",message="timeout must be between 1s and 720h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// imagePullSecrets name Secrets in the Workflow's namespace (type
	// kubernetes.io/dockerconfigjson) that the kubelet uses to pull the steps' images from private
	// registries; for a run of a template they replace the template's. Only the kubelet reads
	// them: they are not mounted into any step, and no step's ServiceAccount may read Secrets.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	ImagePullSecrets []ImagePullSecret `json:"imagePullSecrets,omitempty"`

	// concurrencyGroup serializes runs: of the unfinished Workflows of the namespace that name the
	// same group, one at a time starts steps, in the order they were created; the others wait
	// (their first steps Pending, reason WaitingForConcurrencyGroup) until it finished, so that,
	// for example, one deployment to production runs at a time and at most one run holds its
	// credentials. A run holds the group from its first step's start until it finished (finally
	// steps included), also while suspended. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ConcurrencyGroup string `json:"concurrencyGroup,omitempty"`

	// concurrencyLimit lets this many runs of the concurrency group start steps at once (1 to 100;
	// unset means 1: one at a time), for work that a shared system can take a few of at a time.
	// Runs of a group that give different limits: a run waits while as many runs hold the group as
	// the smallest limit among its own and theirs. Needs concurrencyGroup. Immutable.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	ConcurrencyLimit *int32 `json:"concurrencyLimit,omitempty"`

	// reuseFrom names a run of this namespace that failed or was cancelled, with the same steps
	// and parameter values as this one: the steps that succeeded there are not run again here.
	// They are recorded Succeeded (reason Reused) with that run's results, start no Job and hold
	// no identity or credentials; the other steps run as usual, finally steps always. A run whose
	// reuseFrom names no such run fails with reason InvalidReuse before any step starts. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ReuseFrom string `json:"reuseFrom,omitempty"`

	// ttlAfterFinished deletes the Workflow, and everything it owns, this long after it finished
	// (Succeeded, Failed or Cancelled). Between 0s and 8760h (one year); unset keeps it.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="ttlAfterFinished must be at most 8760h"
	TTLAfterFinished *metav1.Duration `json:"ttlAfterFinished,omitempty"`

	// cancel stops the run when set to true: running steps' Jobs are deleted, their credentials
	// revoked, unfinished steps become Cancelled and the Workflow Cancelled. It cannot be set back
	// to false. Admission records who set it in the annotation custody.dev/cancelled-by; the
	// annotation custody.dev/cancel-reason may say why (kubectl custody cancel --reason).
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// suspend holds the run while true: no step starts (a step whose turn comes, or a retry whose
	// backoff passed, waits with reason Suspended), while running steps go on and end as they end.
	// Set it back to false to resume. The workflow timeout still counts, and cancel still works.
	// For a run that misbehaves and that someone wants to look at before it goes any further.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// Parameter is one named value of a run.
type Parameter struct {
	// name of the parameter: a letter or underscore, then letters, digits or underscores, so that
	// it can be used in CEL as params.<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// value of the parameter (may be empty). Not secret: it is visible to anyone who can read the
	// Workflow.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// ImagePullSecret names a Secret that holds registry credentials.
type ImagePullSecret struct {
	// name of the Secret, in the namespace of the Workflow.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// WorkflowTemplateRef names a WorkflowTemplate in the same namespace.
type WorkflowTemplateRef struct {
	// name of the WorkflowTemplate.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// Step is one unit of work: a container run as a Job, with its own ServiceAccount and SPIFFE
// identity for each attempt. A step cannot choose its ServiceAccount, security context, host
// namespaces or volumes: the controller derives them, and such fields are not part of this API.
// Its container's root filesystem is read-only; it may write to /tmp and to the scratch
// directories it lists, empty directories of its attempt's own.
//
// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn) || !(self.name in self.dependsOn)",message="a step cannot depend on itself"
// +kubebuilder:validation:XValidation:rule="!has(self.forEach) || self.forEach.all(i, i.startsWith('$(') || size(self.name) + size(i) <= 62)",message="each forEach item names a step <name>-<item>, which must be at most 63 characters",messageExpression="'each forEach item names a step <name>-<item>, which must be at most 63 characters: ' + self.name + '-' + self.forEach.filter(i, !i.startsWith('$(') && size(self.name) + size(i) > 62)[0] + ' is longer'"
// +kubebuilder:validation:XValidation:rule="!has(self.parallelism) || has(self.forEach)",message="parallelism limits how many items of a forEach step run at once; this step has no forEach"
type Step struct {
	// name of the step, unique in the workflow: a DNS-1123 label (lower case letters, digits and
	// '-', starting and ending with a letter or digit, at most 63 characters).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// image is the container image the step runs, without spaces.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^\S+$`
	Image string `json:"image"`

	// command overrides the image's entrypoint. $(params.<name>) and
	// $(steps.<step>.results.<name>) are replaced before the step runs, and in finally steps
	// $(workflow.phase), the outcome of the steps.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	Command []string `json:"command,omitempty"`

	// args are the arguments to the entrypoint, with the same substitutions as command.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	Args []string `json:"args,omitempty"`

	// env sets environment variables in the step container, from literal values (with the same
	// substitutions as args) or from ConfigMap keys. Secrets cannot be referenced here: request
	// them through a CredentialGrant.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Env []EnvVar `json:"env,omitempty"`

	// envFrom sets environment variables from every key of non-secret ConfigMaps.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	EnvFrom []ConfigMapEnvSource `json:"envFrom,omitempty"`

	// resources are the step container's compute resource requests and limits.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector limits the nodes the step's pod may run on to those with all of these labels,
	// as a pod's nodeSelector does. For the step to get a SPIFFE identity, the SPIRE agent and the
	// SPIFFE CSI driver must run on those nodes.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the step's pod run on nodes with matching taints (a dedicated node pool),
	// as a pod's tolerations do. The namespace's PodTolerationRestriction settings, where the
	// cluster enables that admission plugin, still apply to the pod.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// priorityClassName is the PriorityClass of the step's pod, as a pod's priorityClassName is:
	// a low one lets batch work yield to services when the cluster is full. It must exist (the
	// API server refuses the pod otherwise, which the step reports), and ResourceQuotas scoped to
	// priority classes, where the cluster has them, still apply.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// workingDir is the step container's working directory.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	WorkingDir string `json:"workingDir,omitempty"`

	// imagePullPolicy is the step container's, as a container's imagePullPolicy: Always,
	// IfNotPresent or Never. Unset, Kubernetes decides: Always for an image tagged :latest or not
	// tagged, IfNotPresent otherwise. Always has the kubelet ask the registry, with the run's
	// imagePullSecrets, at every attempt, so that a step cannot run a private image another
	// workload left on the node without credentials of its own.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// scratch lists the directories, besides /tmp, that the step writes to. The step container's
	// root filesystem is read-only (a step cannot change the program it runs, and it passes
	// policies that require a read-only root filesystem); /tmp and each directory listed here are
	// empty directories of the attempt's own (emptyDir volumes), gone with its pod. A directory
	// listed hides what the image has there. Listing /tmp sets its sizeLimit.
	// +optional
	// +listType=map
	// +listMapKey=path
	// +kubebuilder:validation:MaxItems=8
	Scratch []ScratchDir `json:"scratch,omitempty"`

	// dependsOn names the steps that must have ended before this one starts. A step runs after
	// its dependencies Succeeded or were Skipped; if one Failed or was Cancelled, this step is
	// Skipped.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	DependsOn []string `json:"dependsOn,omitempty"`

	// when is a CEL expression that must evaluate to true for the step to run; otherwise the step
	// is Skipped. It sees `params` (map of parameter values), `steps` (map from an earlier
	// step's name to {phase, results}) and, in a forEach step, `item`. Example:
	// int(steps['check'].results.amount) > 1000.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	When string `json:"when,omitempty"`

	// forEach runs the step once per item, as steps named <name>-<item> that run side by side
	// (within parallelism): each with its own attempts, retries, ServiceAccount, SPIFFE identity,
	// approval and status, and its item as $(item) in command, args and env values. A step that
	// depends on this one waits for every item; a CredentialGrant that covers this step covers
	// each of its items. Items are DNS labels (lower case letters, digits and '-'), at most 16;
	// a workflow runs at most 64 steps and 16 finally steps once every forEach is counted. An
	// entry $(params.NAME) stands for the items the parameter's value lists, separated by commas
	// ("eu,us"), known per run; the results of such a step's items cannot be read by other steps.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=73
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?|\$\(params\.[A-Za-z_][A-Za-z0-9_]*\))$`
	ForEach []string `json:"forEach,omitempty"`

	// parallelism, on a forEach step, is how many of its items run at once at most, started in the
	// order they are listed: 1 runs them one after another, a rolling change (an item that fails
	// keeps the items after it from starting, as any failed step stops the run, unless onFailure
	// is Continue; finally steps' items go on). The workflow's parallelism still applies. Unset:
	// every item may run at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	Parallelism *int32 `json:"parallelism,omitempty"`

	// retries says how often a failed step is tried again. Each retry is a new attempt with a new
	// Job, ServiceAccount and identity. Unset means no retries.
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`

	// timeout bounds one attempt (the Job's active deadline), between 1s and 168h. When it passes
	// the attempt fails with reason TimedOut and may be retried.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="step timeout must be between 1s and 168h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// onFailure says what the step's failure (once its retries are spent, or a timeout, an
	// approval timeout or an error in its when or references) means for the workflow.
	// FailWorkflow, the default: no further step starts, and the workflow fails. Continue: the
	// step is recorded Failed, its dependents run (their `when` can test
	// steps['<name>'].phase == 'Failed'), and it does not fail the workflow; for checks whose
	// failure should be seen but not stop the work. A cancel or the workflow timeout stops the
	// step either way.
	// +optional
	// +kubebuilder:validation:Enum=FailWorkflow;Continue
	OnFailure StepFailurePolicy `json:"onFailure,omitempty"`

	// approval makes the step wait in WaitingForApproval until one of the approvers approves it
	// with the annotation approve.custody.dev/<step>, or rejects it with reject.custody.dev/<step>
	// (the step then fails with reason ApprovalRejected without running).
	// +optional
	Approval *StepApproval `json:"approval,omitempty"`

	// credentials names the CredentialGrants (in the Workflow's namespace) whose credentials this
	// step needs. Each must exist, cover this step, be approved if it needs approval and not be
	// suspended, or the step waits.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Credentials []string `json:"credentials,omitempty"`

	// results declares the small named outputs the step writes as a JSON object of strings to its
	// termination message (/dev/termination-log, at most 4096 bytes in all). Results are visible
	// in status to anyone who can read the Workflow: they must never carry credentials.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Results []ResultSpec `json:"results,omitempty"`
}

// ScratchDir is a directory a step may write to: an empty directory for each attempt.
//
// +kubebuilder:validation:XValidation:rule="!self.path.matches('/[.][.]?(/|$)')",message="path must not have . or .. in it"
// +kubebuilder:validation:XValidation:rule="!['/dev', '/proc', '/sys', '/var/run/secrets/custody.dev', '/spiffe-workload-api'].exists(r, self.path == r || self.path.startsWith(r + '/'))",message="path is, or is under, a directory Custody or the container runtime mounts: /dev, /proc, /sys, /var/run/secrets/custody.dev (credentials), /spiffe-workload-api (the SPIFFE Workload API socket)",messageExpression="'path ' + self.path + ' is, or is under, a directory Custody or the container runtime mounts: /dev, /proc, /sys, /var/run/secrets/custody.dev (credentials), /spiffe-workload-api (the SPIFFE Workload API socket)'"
type ScratchDir struct {
	// path of the directory in the step container: absolute, without a trailing '/', not the
	// root.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^(/[-A-Za-z0-9_.+@=,~]+)+$`
	Path string `json:"path"`

	// sizeLimit is how much the step may write there (the emptyDir's sizeLimit): past it the
	// kubelet evicts the pod, and the attempt fails. Unset: bounded only by the step's
	// ephemeral-storage limit, if any, and the node.
	// +optional
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`
}

// StepDefaults are fields every step takes unless it sets them itself.
type StepDefaults struct {
	// env variables every step gets, before its own; a step's variable of the same name wins.
	// Values may read parameters ($(params.x)), not step results, $(item) or workflow.phase,
	// which depend on the step.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Env []EnvVar `json:"env,omitempty"`

	// resources of every step that sets none.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector of every step that sets none.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations of every step that sets none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// priorityClassName of every step that sets none.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// scratch directories every step gets, besides those it lists itself (a step's own entry for
	// the same path wins): each an empty directory of the attempt's own.
	// +optional
	// +listType=map
	// +listMapKey=path
	// +kubebuilder:validation:MaxItems=8
	Scratch []ScratchDir `json:"scratch,omitempty"`

	// imagePullPolicy of every step that sets none.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// retries of every step that sets none.
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`

	// timeout of one attempt of every step that sets none, between 1s and 168h.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="step timeout must be between 1s and 168h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// StepFailurePolicy is what a step's failure means for its workflow.
type StepFailurePolicy string

const (
	// StepFailureFailWorkflow fails the workflow: no further step starts (the default).
	StepFailureFailWorkflow StepFailurePolicy = "FailWorkflow"
	// StepFailureContinue records the step Failed and goes on: its dependents run, and the
	// workflow does not fail because of it.
	StepFailureContinue StepFailurePolicy = "Continue"
)

// ContinuesOnFailure says whether the step's failure lets the workflow go on.
func (s *Step) ContinuesOnFailure() bool { return s.OnFailure == StepFailureContinue }

// EnvVar is an environment variable of the step container.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.value) && has(self.valueFrom))",message="set value or valueFrom, not both"
type EnvVar struct {
	// name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	Name string `json:"name"`

	// value of the variable, with the same substitutions as command.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`

	// valueFrom reads the value from a ConfigMap key.
	// +optional
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource is where an environment variable's value comes from. Only ConfigMaps: Secrets
// reach steps only through CredentialGrants.
type EnvVarSource struct {
	// configMapKeyRef selects a key of a ConfigMap in the Workflow's namespace.
	// +required
	ConfigMapKeyRef ConfigMapKeySelector `json:"configMapKeyRef"`
}

// ConfigMapKeySelector selects a key of a ConfigMap.
type ConfigMapKeySelector struct {
	// name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`

	// optional lets the step start when the ConfigMap or key does not exist.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// ConfigMapEnvSource sets environment variables from every key of a ConfigMap.
type ConfigMapEnvSource struct {
	// prefix is prepended to every variable name.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Prefix string `json:"prefix,omitempty"`

	// configMapRef names the ConfigMap.
	// +required
	ConfigMapRef ConfigMapRef `json:"configMapRef"`
}

// ConfigMapRef names a ConfigMap in the Workflow's namespace.
type ConfigMapRef struct {
	// name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// optional lets the step start when the ConfigMap does not exist.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// RetryPolicy says how often and how soon a failed step is tried again.
type RetryPolicy struct {
	// limit is the number of retries after the first attempt (0 to 20), so a step runs at most
	// limit+1 times.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	Limit int32 `json:"limit"`

	// backoff is the wait between attempts. Unset means 10s, doubling, at most 5m.
	// +optional
	Backoff *Backoff `json:"backoff,omitempty"`

	// when is a CEL expression that decides, after a failed attempt, whether the step is tried
	// again (while retries remain); false fails the step at once. It sees `attempt` (the number of
	// the attempt that failed), `reason` (why it failed: JobFailed, TimedOut, ResultsInvalid,
	// JobDeleted, PodDeleted or EphemeralContainerAdded), `exitCode` (the step container's exit code, -1 if it never
	// exited), `disrupted` (its pod was evicted, preempted or lost with its node), `duration` (how
	// long it ran, a CEL duration), `params` and, in a forEach step, `item`. Unset retries every
	// failure. Examples: exitCode != 2; disrupted || reason == 'TimedOut'; duration < duration('1m').
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	When string `json:"when,omitempty"`

	// avoidFailedNodes has each retry prefer nodes on which no earlier attempt of the step ran
	// (a node's kubernetes.io/hostname): a step that failed because of its node (a full disk, a
	// broken GPU driver) is tried elsewhere. A preference, not a rule: when no other node fits,
	// the retry runs on one of those.
	// +optional
	AvoidFailedNodes bool `json:"avoidFailedNodes,omitempty"`
}

// Backoff is an exponential wait: duration before the first retry, multiplied by factor for each
// further retry, never longer than max.
//
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !has(self.max) || duration(self.duration) <= duration(self.max)",message="backoff duration must not be longer than max"
type Backoff struct {
	// duration before the first retry, between 0s and 1h. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="backoff duration must be at most 1h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// factor multiplies the wait after each retry, an integer between 1 and 10. Defaults to 2.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Factor *int32 `json:"factor,omitempty"`

	// max is the longest wait between two attempts, at most 24h. Defaults to 5m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="backoff max must be at most 24h"
	Max *metav1.Duration `json:"max,omitempty"`

	// jitter, a percentage between 0 and 100, shortens each wait by up to that much: by an amount
	// that differs for each run, step and attempt, so that runs that failed together (a registry
	// or an API they all call went down) do not all retry at the same moment. Defaults to 0: each
	// wait is exactly as computed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Jitter *int32 `json:"jitter,omitempty"`
}

// StepApproval gates a step on an approval.
type StepApproval struct {
	// approvers may approve the step, or reject it (annotation reject.custody.dev/<step>, its value
	// why), which fails it without running. The Workflow's creator may do neither, even if listed.
	// +required
	Approvers Approvers `json:"approvers"`

	// timeout fails the step with reason ApprovalTimedOut if nobody approved it in time, between 1m
	// and 720h. Unset means the step waits until the Workflow's own timeout.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="approval timeout must be between 1m and 720h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// ResultSpec declares one named result of a step.
type ResultSpec struct {
	// name of the result, usable as steps.<step>.results.<name> in CEL and
	// $(steps.<step>.results.<name>) in args and env.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// description says what the result means.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// pattern, when set, is a regular expression (RE2 syntax) that the whole value must match, as
	// if written ^(?:pattern)$, or the attempt fails with ResultsInvalid: a later step that
	// reads the result then gets what it expects (sha256:[0-9a-f]{64} for a digest), not text a
	// misbehaving step chose, such as shell commands for a script.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Pattern string `json:"pattern,omitempty"`
}

// WorkflowResultSpec declares one result of a whole run.
type WorkflowResultSpec struct {
	// name of the result, as it appears in status.results.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// value of the result: text with references to parameters ($(params.<name>)) and to the
	// results of steps and finally steps ($(steps.<step>.results.<name>)), which admission checks
	// exist. When a step it reads did not succeed, the result is left out of status.results and
	// an Event (ResultNotProduced) says why.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`

	// description says what the result means.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`
}

// WorkflowPhase is the phase of a whole run.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Cancelled
type WorkflowPhase string

const (
	// WorkflowPending means accepted, no step started or ended yet (one taken over by reuseFrom, or
	// skipped, has ended).
	WorkflowPending WorkflowPhase = "Pending"
	// WorkflowRunning means at least one step started or ended and the run has not ended.
	WorkflowRunning WorkflowPhase = "Running"
	// WorkflowSucceeded means every step Succeeded or was Skipped.
	WorkflowSucceeded WorkflowPhase = "Succeeded"
	// WorkflowFailed means a step failed after its retries, or the workflow timed out.
	WorkflowFailed WorkflowPhase = "Failed"
	// WorkflowCancelled means spec.cancel was set before the run ended.
	WorkflowCancelled WorkflowPhase = "Cancelled"
)

// StepPhase is the phase of one step.
// +kubebuilder:validation:Enum=Pending;WaitingForApproval;Running;Retrying;Succeeded;Failed;Skipped;Cancelled
type StepPhase string

const (
	// StepPending means waiting for dependencies, credentials or scheduling.
	StepPending StepPhase = "Pending"
	// StepWaitingForApproval means waiting for an approver's annotation.
	StepWaitingForApproval StepPhase = "WaitingForApproval"
	// StepRunning means the current attempt's Job exists and has not ended.
	StepRunning StepPhase = "Running"
	// StepRetrying means an attempt failed; the next one starts after the backoff.
	StepRetrying StepPhase = "Retrying"
	// StepSucceeded means an attempt succeeded.
	StepSucceeded StepPhase = "Succeeded"
	// StepFailed means the last allowed attempt failed.
	StepFailed StepPhase = "Failed"
	// StepSkipped means `when` was false, or a dependency Failed or was Cancelled.
	StepSkipped StepPhase = "Skipped"
	// StepCancelled means the workflow was cancelled or timed out before the step ended.
	StepCancelled StepPhase = "Cancelled"
)

// Ended says whether a step is past running: Succeeded, Failed, Skipped or Cancelled.
func (p StepPhase) Ended() bool {
	switch p {
	case StepSucceeded, StepFailed, StepSkipped, StepCancelled:
		return true
	}
	return false
}

// WorkflowStatus is the observed state of a run.
type WorkflowStatus struct {
	// observedGeneration is the generation the controller last fully reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase of the run.
	// +optional
	Phase WorkflowPhase `json:"phase,omitempty"`

	// progress is "<ended steps>/<all steps>", for printing.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Progress string `json:"progress,omitempty"`

	// conditions: Ready (True once Succeeded), Reconciling (True while running), Stalled (True
	// once Failed or Cancelled), each with a reason from this API's constants.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// startTime is when the controller started the run; the workflow timeout counts from it.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the run ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// template records the WorkflowTemplate this run was resolved from (with workflowTemplateRef):
	// its generation and a copy of its spec at that moment, which is what the run executes.
	// +optional
	Template *ResolvedTemplate `json:"template,omitempty"`

	// reused records the run whose succeeded steps this run took over (spec.reuseFrom), once it
	// did, before its first step started.
	// +optional
	Reused *ReusedRun `json:"reused,omitempty"`

	// results are the run's results (spec.results, or the template's), computed when it ended,
	// in the order declared; a result whose steps did not produce what it reads is left out.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Results []StepResult `json:"results,omitempty"`

	// steps is the state of every step, in spec order, then every finally step.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=80
	Steps []StepStatus `json:"steps,omitempty"`
}

// ResolvedTemplate is the WorkflowTemplate a run was resolved from.
type ResolvedTemplate struct {
	// name of the WorkflowTemplate.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// uid of the WorkflowTemplate when the run was resolved.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid,omitempty"`

	// generation of the WorkflowTemplate when the run was resolved.
	// +required
	Generation int64 `json:"generation"`

	// resolvedTime is when the run was resolved.
	// +optional
	ResolvedTime *metav1.Time `json:"resolvedTime,omitempty"`

	// spec is the template's spec at that generation: the steps this run executes.
	// +required
	Spec WorkflowTemplateSpec `json:"spec"`
}

// ReusedRun is the run a run took succeeded steps from.
type ReusedRun struct {
	// name of the run.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// uid of the run, which tells it apart from a later run of the same name.
	// +required
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`

	// steps is how many steps were taken over (reason Reused).
	// +optional
	Steps int32 `json:"steps,omitempty"`
}

// StepStatus is the observed state of one step and its current (or last) attempt.
type StepStatus struct {
	// name of the step.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// phase of the step.
	// +required
	Phase StepPhase `json:"phase"`

	// reason is a CamelCase word for the phase, matching the Event that recorded it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`

	// message explains the phase to a person. It never contains a credential.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// attempt is the number of the current or last attempt, starting at 1; 0 before the first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempt int32 `json:"attempt,omitempty"`

	// jobName is the Job of the current or last attempt.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	JobName string `json:"jobName,omitempty"`

	// podName is the pod of the current or last attempt.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName,omitempty"`

	// nodeName is the node the pod of the current or last attempt ran on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName,omitempty"`

	// serviceAccountName is the attempt's own ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// spiffeID is the SPIFFE ID of the current or last attempt.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	SPIFFEID string `json:"spiffeID,omitempty"`

	// identity is the state of the SPIFFE identity (SPIRE registration entry) of the current or
	// last attempt.
	// +optional
	Identity *StepIdentity `json:"identity,omitempty"`

	// credentials records what was issued to the current or last attempt: metadata only, never a
	// value.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Credentials []IssuedCredential `json:"credentials,omitempty"`

	// results the step wrote, by name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Results []StepResult `json:"results,omitempty"`

	// approval records who approved the step, when it needed approval.
	// +optional
	Approval *ApprovalRecord `json:"approval,omitempty"`

	// rejection records who rejected the step instead of approving it, when, and why; the step
	// failed with reason ApprovalRejected without running.
	// +optional
	Rejection *RejectionRecord `json:"rejection,omitempty"`

	// lastFailureReason is the reason the last failed attempt failed (for example TimedOut or
	// BackoffLimitExceeded); it stays when a retry succeeds.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LastFailureReason string `json:"lastFailureReason,omitempty"`

	// readyTime is when the step's dependencies were met; an approval timeout counts from it.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`

	// nextAttemptTime is when the next attempt starts, while the step is Retrying.
	// +optional
	NextAttemptTime *metav1.Time `json:"nextAttemptTime,omitempty"`

	// startTime is when the first attempt started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the step ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// IdentityState is the state of a step attempt's SPIFFE identity.
// +kubebuilder:validation:Enum=Disabled;Pending;Registered;RevocationPending;Revoked;NotIssued
type IdentityState string

const (
	// IdentityDisabled means SPIRE is not configured: the attempt runs without a SPIFFE identity.
	IdentityDisabled IdentityState = "Disabled"
	// IdentityPending means the attempt waits for its pod to be on a node, or for SPIRE to accept
	// its registration entry.
	IdentityPending IdentityState = "Pending"
	// IdentityRegistered means the attempt's registration entry exists: its step container can
	// obtain SVIDs.
	IdentityRegistered IdentityState = "Registered"
	// IdentityRevocationPending means the attempt ended but its entry could not be deleted yet
	// (SPIRE unreachable); the Workflow keeps its finalizer until it is.
	IdentityRevocationPending IdentityState = "RevocationPending"
	// IdentityRevoked means the attempt's entry was deleted when the attempt ended.
	IdentityRevoked IdentityState = "Revoked"
	// IdentityNotIssued means the attempt ended before its pod was on a node: no entry was made.
	IdentityNotIssued IdentityState = "NotIssued"
)

// StepIdentity is the state of the SPIFFE identity of a step's current or last attempt. It
// records that an identity existed and when, never an SVID.
type StepIdentity struct {
	// state of the identity.
	// +required
	State IdentityState `json:"state"`

	// attempt the identity belongs to.
	// +required
	// +kubebuilder:validation:Minimum=1
	Attempt int32 `json:"attempt"`

	// entryID is the SPIRE registration entry's ID (deterministic: prefix, workflow UID, step,
	// attempt).
	// +optional
	// +kubebuilder:validation:MaxLength=255
	EntryID string `json:"entryID,omitempty"`

	// registeredTime is when the entry was created.
	// +optional
	RegisteredTime *metav1.Time `json:"registeredTime,omitempty"`

	// expiresAt is the entry's expiry: the attempt's deadline, a backstop should revocation never
	// happen.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// revokedTime is when the entry was deleted.
	// +optional
	RevokedTime *metav1.Time `json:"revokedTime,omitempty"`

	// message explains the state, for example the last error from SPIRE.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// StepResult is one named result: one a step wrote, or one of a run's results.
type StepResult struct {
	// name of the result.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// value of the result.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// IssuedCredential records that a credential was issued to a step attempt, and when it was
// revoked. It never contains the credential's value.
type IssuedCredential struct {
	// grant is the CredentialGrant the credential was issued under.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Grant string `json:"grant"`

	// kind of the credential.
	// +required
	Kind CredentialKind `json:"kind"`

	// attempt is the step attempt that held it.
	// +required
	// +kubebuilder:validation:Minimum=1
	Attempt int32 `json:"attempt"`

	// spiffeID is the identity the credential was issued to.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	SPIFFEID string `json:"spiffeID,omitempty"`

	// resource names the object that carried it (RoleBinding or Secret copy), if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Resource string `json:"resource,omitempty"`

	// issuedAt is when it was issued.
	// +required
	IssuedAt metav1.Time `json:"issuedAt"`

	// expiresAt is when it expires at the latest (the grant's ttl).
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// revokedAt is when it was revoked; unset while it is live.
	// +optional
	RevokedAt *metav1.Time `json:"revokedAt,omitempty"`

	// revocationReason says why it was revoked (AttemptEnded, Expired, GrantWithdrawn, GrantExpired,
	// ...).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	RevocationReason string `json:"revocationReason,omitempty"`

	// onRevoke is the grant's onRevoke while the credential was live: StopStep means that a
	// revocation before the attempt ended stops the attempt.
	// +optional
	// +kubebuilder:validation:Enum=Continue;StopStep
	OnRevoke RevokePolicy `json:"onRevoke,omitempty"`
}

// Workflow is one run of a DAG of steps. Each step attempt runs as a Job with its own
// ServiceAccount and SPIFFE identity, and holds only the credentials granted to it, only while it
// runs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cwf,categories=custody
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="a Workflow name must be at most 63 characters: it is the value of the custody.dev/workflow label on everything the run creates"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Steps",type=string,JSONPath=`.status.progress`,description="Ended steps / all steps"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type Workflow struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the run the user asked for. Only cancel may change after creation.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",message="cancel cannot be set back to false once it is true"
	// +kubebuilder:validation:XValidation:rule="has(self.steps) == has(oldSelf.steps) && (!has(self.steps) || self.steps == oldSelf.steps)",message="steps are immutable; create a new Workflow to run different steps"
	// +kubebuilder:validation:XValidation:rule="has(self.finally) == has(oldSelf.finally) && (!has(self.finally) || self.finally == oldSelf.finally)",message="finally is immutable; create a new Workflow to run different steps"
	// +kubebuilder:validation:XValidation:rule="has(self.workflowTemplateRef) == has(oldSelf.workflowTemplateRef) && (!has(self.workflowTemplateRef) || self.workflowTemplateRef == oldSelf.workflowTemplateRef)",message="workflowTemplateRef is immutable; create a new Workflow to run another template"
	// +kubebuilder:validation:XValidation:rule="has(self.parameters) == has(oldSelf.parameters) && (!has(self.parameters) || self.parameters == oldSelf.parameters)",message="parameters are immutable; create a new Workflow to run with other values"
	// +kubebuilder:validation:XValidation:rule="has(self.parallelism) == has(oldSelf.parallelism) && (!has(self.parallelism) || self.parallelism == oldSelf.parallelism)",message="parallelism is immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.timeout) == has(oldSelf.timeout) && (!has(self.timeout) || self.timeout == oldSelf.timeout)",message="timeout is immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.imagePullSecrets) == has(oldSelf.imagePullSecrets) && (!has(self.imagePullSecrets) || self.imagePullSecrets == oldSelf.imagePullSecrets)",message="imagePullSecrets are immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.concurrencyGroup) == has(oldSelf.concurrencyGroup) && (!has(self.concurrencyGroup) || self.concurrencyGroup == oldSelf.concurrencyGroup)",message="concurrencyGroup is immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.concurrencyLimit) == has(oldSelf.concurrencyLimit) && (!has(self.concurrencyLimit) || self.concurrencyLimit == oldSelf.concurrencyLimit)",message="concurrencyLimit is immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.reuseFrom) == has(oldSelf.reuseFrom) && (!has(self.reuseFrom) || self.reuseFrom == oldSelf.reuseFrom)",message="reuseFrom is immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.stepDefaults) == has(oldSelf.stepDefaults) && (!has(self.stepDefaults) || self.stepDefaults == oldSelf.stepDefaults)",message="stepDefaults are immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.results) == has(oldSelf.results) && (!has(self.results) || self.results == oldSelf.results)",message="results are immutable"
	// +kubebuilder:validation:XValidation:rule="has(self.ttlAfterFinished) == has(oldSelf.ttlAfterFinished) && (!has(self.ttlAfterFinished) || self.ttlAfterFinished == oldSelf.ttlAfterFinished)",message="ttlAfterFinished is immutable"
	Spec WorkflowSpec `json:"spec"`

	// status is what the controller observed. It defaults to observedGeneration 0, so that
	// kstatus (Flux) reads a new object as InProgress, not Current, until the controller saw it.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status WorkflowStatus `json:"status,omitempty"`
}

// WorkflowList is a list of Workflows.
//
// +kubebuilder:object:root=true
type WorkflowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workflow `json:"items"`
}
