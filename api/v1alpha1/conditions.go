package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow the Kubernetes API conventions that kstatus,
// Argo CD and Flux read: a finished, healthy object has Ready=True and neither Reconciling nor
// Stalled; an object still being worked on has Reconciling=True; an object that cannot make progress
// without a change from a person has Stalled=True.
const (
	// ConditionReady is True when the object reached its goal: a Workflow that Succeeded, a
	// CredentialGrant that can issue. It is False with a reason saying why not otherwise.
	ConditionReady = "Ready"

	// ConditionReconciling is True while the controller is still working towards the goal, for
	// example while a Workflow's steps run. It is removed once the object settles.
	ConditionReconciling = "Reconciling"

	// ConditionStalled is True when the object cannot make progress: its spec is invalid, a
	// Workflow failed or was cancelled, or a grant's source is missing. It is removed otherwise.
	ConditionStalled = "Stalled"

	// ConditionApproved is True on a CredentialGrant whose spec.approval is satisfied (or not
	// required), and on a Workflow when every step that needs an approval has one.
	ConditionApproved = "Approved"

	// ConditionRotationOverdue is True on a CredentialGrant of kind secret whose source Secret has
	// not changed for longer than spec.credential.secret.maxAge.
	ConditionRotationOverdue = "RotationOverdue"

	// ConditionUnused is True on a CredentialGrant that has issued nothing for longer than its
	// unusedAfter (or the manager's --grant-unused-after) since it was created, approved or last
	// issued: access nobody uses, to take away.
	ConditionUnused = "Unused"

	// ConditionBroadAccess is True on a CredentialGrant of kind kubernetesRole whose role lets a
	// step that holds it reach more than its own work: other credentials and identities of the
	// namespace (reading Secrets, running pods, getting tokens) or access that outlives the step
	// (RBAC). The grant still issues; the condition, a Warning Event and the metric say so.
	ConditionBroadAccess = "BroadAccess"

	// ConditionUnprotected is True on a CredentialGrant whose namespace does not protect step pods
	// (label custody.dev/protect-step-pods=true): there, whoever may exec into, attach to or create
	// pods, or get ServiceAccount tokens, reaches what the grant hands out while a step holds it.
	// The grant still issues; the condition, a Warning Event and the metric say so.
	ConditionUnprotected = "Unprotected"

	// ConditionReviewDue is True on a CredentialGrant whose approval lapses under approval.validFor
	// within its review window (ApprovalReviewWindow) or has lapsed: an approver is to approve it
	// again, which admission allows from the start of the window, so that it issues on without a
	// gap. Present only on a grant with a validFor and an approval.
	ConditionReviewDue = "ReviewDue"
)

// Condition reasons. Event reasons use the same strings, so a condition and the Event that recorded
// the transition can be matched.
const (
	// ReasonProgressing means the controller is working on the object (steps are running or pending).
	ReasonProgressing = "Progressing"
	// ReasonSucceeded means every step of a Workflow succeeded or was skipped.
	ReasonSucceeded = "Succeeded"
	// ReasonFailed means a step failed after its retries, so the Workflow failed.
	ReasonFailed = "Failed"
	// ReasonCancelled means spec.cancel was set; running steps were stopped.
	ReasonCancelled = "Cancelled"
	// ReasonTimedOut means a step or the Workflow ran longer than its timeout.
	ReasonTimedOut = "TimedOut"
	// ReasonStopping means every step ended but the pod of an attempt that ended (stopped by a
	// cancel or timeout, or whose Job was deleted) still runs: finally steps, a retry and the
	// Workflow's end wait for it to stop, so that nothing overlaps what it still does.
	ReasonStopping = "Stopping"
	// ReasonRetriesExhausted means a step failed on its last allowed attempt.
	ReasonRetriesExhausted = "RetriesExhausted"
	// ReasonWaitingForApproval means a step or grant waits for an approver's annotation.
	ReasonWaitingForApproval = "WaitingForApproval"
	// ReasonApprovalTimedOut means no approval arrived within the approval's timeout.
	ReasonApprovalTimedOut = "ApprovalTimedOut"
	// ReasonApprovalRejected means an approver rejected a step that waited for an approval (the
	// annotation reject.custody.dev/<step>): the step failed without running.
	ReasonApprovalRejected = "ApprovalRejected"
	// ReasonApproved means the approval annotation was recorded.
	ReasonApproved = "Approved"
	// ReasonApprovalCleared means a grant's approval was removed because its subjects or credential
	// changed or its expiresAt was moved later; it must be approved again.
	ReasonApprovalCleared = "ApprovalCleared"
	// ReasonApprovalNotRequired means the grant does not require an approval.
	ReasonApprovalNotRequired = "ApprovalNotRequired"
	// ReasonInvalidSpec means the spec passed admission but cannot be run (for example a `when`
	// expression that does not compile); the message names the step and field.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonGrantNotFound means a step requests a CredentialGrant that does not exist.
	ReasonGrantNotFound = "GrantNotFound"
	// ReasonGrantNotApproved means a requested grant requires an approval it does not have yet.
	ReasonGrantNotApproved = "GrantNotApproved"
	// ReasonGrantSuspended means a requested grant is suspended (the kill switch).
	ReasonGrantSuspended = "GrantSuspended"
	// ReasonGrantExpired means a requested grant's expiresAt has passed: it issues nothing more.
	ReasonGrantExpired = "GrantExpired"
	// ReasonExpired means the grant's expiresAt has passed: it issues nothing, and what it issued
	// was revoked.
	ReasonExpired = "Expired"
	// ReasonGrantNotCovered means a requested grant exists but its subjects do not cover this step.
	ReasonGrantNotCovered = "GrantNotCovered"
	// ReasonSourceNotFound means a grant's source Secret or Role does not exist.
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonSourceNotGrantable means a grant's source Secret lacks the custody.dev/grantable label.
	ReasonSourceNotGrantable = "SourceNotGrantable"
	// ReasonImagePullSecretNotUsable means one of the run's imagePullSecrets does not exist or
	// lacks the custody.dev/image-pull label.
	ReasonImagePullSecretNotUsable = "ImagePullSecretNotUsable"
	// ReasonSuspended means the grant is suspended and issues nothing; for a Workflow (and a step
	// that may start), that the workflow is suspended (spec.suspend) and starts no step.
	ReasonSuspended = "Suspended"
	// ReasonResumed means a suspended workflow was resumed (an Event).
	ReasonResumed = "Resumed"
	// ReasonActive means the grant is ready to issue credentials.
	ReasonActive = "Active"
	// ReasonRotationOverdue means the grant's source Secret is older than maxAge.
	ReasonRotationOverdue = "RotationOverdue"
	// ReasonRotatedInTime means the grant's source Secret changed within maxAge.
	ReasonRotatedInTime = "RotatedInTime"
	// ReasonApprovalExpired means the grant's approval lapsed (approval.validFor): it issues
	// nothing until approved again (condition Approved=False, and a Warning Event).
	ReasonApprovalExpired = "ApprovalExpired"
	// ReasonApprovalLapsesSoon means the grant's approval lapses within its review window: an
	// approver may approve it again now (condition ReviewDue=True, and a Warning Event).
	ReasonApprovalLapsesSoon = "ApprovalLapsesSoon"
	// ReasonReviewNotDue means the grant's approval stands for longer than its review window.
	ReasonReviewNotDue = "ReviewNotDue"
	// ReasonRoleChanged means a grant's role allows more than when it was approved (the approval
	// covered what its rules allowed then): the grant issues nothing, and what steps hold under it is revoked,
	// until it is approved again (condition Approved=False, a Warning Event; a revocation reason).
	ReasonRoleChanged = "RoleChanged"
	// ReasonNotUsedRecently means the grant has issued nothing for longer than unusedAfter
	// (condition Unused=True, and a Warning Event).
	ReasonNotUsedRecently = "NotUsedRecently"
	// ReasonUsedRecently means the grant was created, approved or last issued within unusedAfter.
	ReasonUsedRecently = "UsedRecently"
	// ReasonRoleReachesBeyondStep means a role grant's role reaches further than the step
	// (condition BroadAccess=True, and a Warning Event).
	ReasonRoleReachesBeyondStep = "RoleReachesBeyondStep"
	// ReasonApprovalRequired means a grant's role reaches beyond the step in a namespace labelled
	// custody.dev/broad-roles-need-approval=true, and the grant does not require an approval.
	ReasonApprovalRequired = "ApprovalRequired"
	// ReasonRoleWithinStep means a role grant's role does none of what BroadAccess reports.
	ReasonRoleWithinStep = "RoleWithinStep"
	// ReasonNamespaceUnprotected means a grant's namespace does not protect step pods (condition
	// Unprotected=True, and a Warning Event).
	ReasonNamespaceUnprotected = "NamespaceUnprotected"
	// ReasonNamespaceProtected means a grant's namespace protects step pods.
	ReasonNamespaceProtected = "NamespaceProtected"
	// ReasonTemplateNotFound means a Workflow's workflowTemplateRef names a WorkflowTemplate that
	// does not exist (yet); the run waits for it.
	ReasonTemplateNotFound = "TemplateNotFound"
	// ReasonWaitingForConcurrencyGroup means another run of the Workflow's concurrencyGroup runs,
	// or was created first; the run starts no step until its turn (Ready reason and step reason).
	ReasonWaitingForConcurrencyGroup = "WaitingForConcurrencyGroup"
	// ReasonTemplateResolved is the Event reason for a run's template being resolved and recorded.
	ReasonTemplateResolved = "TemplateResolved"
	// ReasonInvalidReuse means a run's reuseFrom names no run whose succeeded steps it can take
	// over: none of that name, one that has not ended or succeeded, or one with other steps or
	// parameter values.
	ReasonInvalidReuse = "InvalidReuse"
	// ReasonReused is the Event reason for a run taking over the succeeded steps of the run it
	// reuses.
	ReasonReused = "Reused"
	// ReasonResultNotProduced is the Event reason for a run's result that could not be computed
	// when it ended: a step it reads did not succeed, or wrote no such result.
	ReasonResultNotProduced = "ResultNotProduced"
	// ReasonInvalidParameters means a run's parameters do not match its template's declarations.
	ReasonInvalidParameters = "InvalidParameters"
	// ReasonValid means a WorkflowTemplate's spec can run.
	ReasonValid = "Valid"
	// ReasonInvalidSchedule means a CronWorkflow's schedule or timeZone cannot be parsed.
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonScheduled means a CronWorkflow creates runs on its schedule.
	ReasonScheduled = "Scheduled"
	// ReasonRunCreated is the Event reason for a CronWorkflow creating a run.
	ReasonRunCreated = "RunCreated"
	// ReasonRunSkipped is the Event reason for a due run not created (concurrencyPolicy Forbid, or
	// its template missing).
	ReasonRunSkipped = "RunSkipped"
	// ReasonRunReplaced is the Event reason for a running run cancelled by concurrencyPolicy
	// Replace.
	ReasonRunReplaced = "RunReplaced"
	// ReasonRunDeleted is the Event reason for a finished run deleted by a history limit.
	ReasonRunDeleted = "RunDeleted"
	// ReasonScheduleChanged is the Event reason for a CronWorkflow whose schedule or time zone
	// changed: the new schedule counts from the change.
	ReasonScheduleChanged = "ScheduleChanged"
	// ReasonMissedSchedule is the Event reason for schedules missed (the controller was down, or
	// past startingDeadlineSeconds) that are not made up.
	ReasonMissedSchedule = "MissedSchedule"
	// ReasonRevocationPending means a step attempt ended but what it held (its SPIRE entry) could
	// not be revoked yet; the controller retries and the Workflow keeps its finalizer.
	ReasonRevocationPending = "RevocationPending"
	// ReasonIdentityIssued is the Event reason for a step attempt's SPIRE entry being created.
	ReasonIdentityIssued = "IdentityIssued"
	// ReasonIdentityRevoked is the Event reason for a step attempt's SPIRE entry being deleted.
	ReasonIdentityRevoked = "IdentityRevoked"
	// ReasonIdentityFailed is the Event reason for SPIRE refusing or failing a registration.
	ReasonIdentityFailed = "IdentityFailed"
	// ReasonCredentialIssued is the Event reason for a credential issued to a step attempt.
	ReasonCredentialIssued = "CredentialIssued"
	// ReasonCredentialRevoked is the Event reason for a step attempt's credential revoked, and
	// the reason of a step whose attempt was stopped because a credential it held was revoked
	// before it ended, under a grant whose onRevoke is StopStep (the attempt counts as failed).
	ReasonCredentialRevoked = "CredentialRevoked"
	// ReasonCredentialRotated is the Event reason for a live Secret copy updated from its source.
	ReasonCredentialRotated = "CredentialRotated"
)

// FinalizerRevocation keeps a Workflow until everything its step attempts held was revoked.
const FinalizerRevocation = "custody.dev/revocation"

// Step reasons: StepStatus.reason and the reasons of the Events that record step transitions.
const (
	// StepReasonWaitingForDependencies means the step waits for the steps it depends on.
	StepReasonWaitingForDependencies = "WaitingForDependencies"
	// StepReasonStarted means an attempt's Job was created.
	StepReasonStarted = "Started"
	// StepReasonSucceeded means the attempt's Job completed and its results were read.
	StepReasonSucceeded = "Succeeded"
	// StepReasonReused means the step succeeded in the run this run reuses (spec.reuseFrom) and was
	// not run again.
	StepReasonReused = "Reused"
	// StepReasonJobFailed means the attempt's container failed (non-zero exit or the pod failed).
	StepReasonJobFailed = "JobFailed"
	// StepReasonJobInvalid means the API server refused the attempt's Job as invalid (for example
	// resource requests above their limits). The step fails without retries: every attempt would
	// be refused the same way.
	StepReasonJobInvalid = "JobInvalid"
	// StepReasonCreateFailed means creating the attempt's ServiceAccount or Job failed for another
	// reason (a ResourceQuota, an admission policy, the API server unavailable). The step waits
	// and the controller tries again with backoff.
	StepReasonCreateFailed = "CreateFailed"
	// StepReasonPodNotCreated means the attempt's Job exists but the Job controller could not
	// create its pod (its FailedCreate Event is repeated in the step's message); it keeps trying.
	StepReasonPodNotCreated = "PodNotCreated"
	// StepReasonJobSuspended means the attempt's Job is suspended (spec.suspend), as a job queue
	// such as Kueue keeps a Job until it admits it: the step runs once the Job is resumed.
	StepReasonJobSuspended = "JobSuspended"
	// StepReasonUnschedulable means the attempt's pod exists but the scheduler finds no node for
	// it (its message is repeated in the step's: no node matches its nodeSelector or tolerations,
	// or has the resources it requests).
	StepReasonUnschedulable = "Unschedulable"
	// StepReasonContainerCannotStart means the step container waits for something that will not
	// come by itself: its image cannot be pulled, or a ConfigMap it reads is missing (the
	// kubelet's reason and message are repeated in the step's).
	StepReasonContainerCannotStart = "ContainerCannotStart"
	// StepReasonJobDeleted means the attempt's Job disappeared before it ended.
	StepReasonJobDeleted = "JobDeleted"
	// StepReasonPodDeleted means the attempt's pod was deleted before its step container ended
	// (by a person or a tool, not by an eviction, which marks the pod disrupted), so its Job failed.
	StepReasonPodDeleted = "PodDeleted"
	// StepReasonEphemeralContainerAdded means an ephemeral container (kubectl debug) was added to
	// the attempt's pod: from it a person could use the attempt's credentials and identity, so the
	// attempt ends (its Job is deleted, its credentials revoked) and counts as failed.
	StepReasonEphemeralContainerAdded = "EphemeralContainerAdded"
	// StepReasonResultsInvalid means the step ended but its termination message did not hold the
	// declared results as a JSON object of strings.
	StepReasonResultsInvalid = "ResultsInvalid"
	// StepReasonRetrying means an attempt failed and another one is scheduled.
	StepReasonRetrying = "Retrying"
	// StepReasonWhenFalse means the step's `when` expression was false.
	StepReasonWhenFalse = "WhenFalse"
	// StepReasonWhenError means the step's `when` expression could not be evaluated.
	StepReasonWhenError = "WhenError"
	// StepReasonInvalidReference means an args, command or env reference could not be resolved.
	StepReasonInvalidReference = "InvalidReference"
	// StepReasonDependencyNotSucceeded means a dependency Failed or was Cancelled, so the step never
	// runs.
	StepReasonDependencyNotSucceeded = "DependencyNotSucceeded"
	// StepReasonWaitingForParallelism means the step may start but the workflow's parallelism
	// limit is reached; it starts when a running step ends.
	StepReasonWaitingForParallelism = "WaitingForParallelism"
	// StepReasonWaitingForSteps means a finally step waits for every step to end.
	StepReasonWaitingForSteps = "WaitingForSteps"
	// StepReasonWorkflowFailing means another step Failed, so no further step starts (fail fast).
	StepReasonWorkflowFailing = "WorkflowFailing"
)

// StepReasonsStuck are the reasons of a step whose attempt cannot get going: it could not be
// created, or its pod cannot be created, scheduled or started. The step waits (Pending or Running)
// until the cause is gone or its timeout passes.
var StepReasonsStuck = []string{StepReasonCreateFailed, StepReasonPodNotCreated, StepReasonUnschedulable,
	StepReasonContainerCannotStart}

// Well-known labels and annotations.
const (
	// LabelWorkflow is set on every object created for a Workflow; its value is the Workflow name.
	LabelWorkflow = "custody.dev/workflow"
	// LabelStep is set on every object created for a step; its value is the step name.
	LabelStep = "custody.dev/step"
	// LabelAttempt is set on every object created for a step attempt; its value is the attempt
	// number, starting at 1.
	LabelAttempt = "custody.dev/attempt"
	// LabelTemplate is set on every run of a WorkflowTemplate; its value is the template name, so
	// that a CredentialGrant's subjects can select every run of a template.
	LabelTemplate = "custody.dev/template"
	// LabelCronWorkflow is set on every run a CronWorkflow creates; its value is its name.
	LabelCronWorkflow = "custody.dev/cronworkflow"
	// AnnotationOnBehalfOf is set by the CronWorkflow controller on the runs it creates: the author
	// of the CronWorkflow (its custody.dev/created-by), who may not approve the runs' steps.
	AnnotationOnBehalfOf = "custody.dev/on-behalf-of"
	// AnnotationAuthorizedBy is set by admission on a CronWorkflow whenever its spec is written:
	// the writer's user name and groups as JSON (an Author). The controller checks, before each
	// run, that this identity may still `use` every grant the run would request, so a CronWorkflow
	// stops getting credentials when its author loses the right (offboarding).
	AnnotationAuthorizedBy = "custody.dev/authorized-by"
	// ReasonGrantNotUsable means a CronWorkflow's author may not (or no longer) use a grant its runs
	// request; due runs are skipped.
	ReasonGrantNotUsable = "GrantNotUsable"
	// AnnotationScheduledTime is the scheduled time (RFC 3339) a CronWorkflow created a run for.
	AnnotationScheduledTime = "custody.dev/scheduled-time"
	// LabelGrantable must be "true" on a Secret before a CredentialGrant may hand out its keys.
	LabelGrantable = "custody.dev/grantable"
	// LabelImagePull must be "true" on a Secret before a Workflow may name it in imagePullSecrets.
	LabelImagePull = "custody.dev/image-pull"
	// LabelBroadRolesNeedApproval set to "true" on a namespace (by whoever may label namespaces)
	// makes every kubernetesRole grant there whose role reaches beyond the step (BroadAccess)
	// require an approval: admission refuses one that does not, and one whose role widens later
	// stops issuing (Ready=False, reason ApprovalRequired).
	LabelBroadRolesNeedApproval = "custody.dev/broad-roles-need-approval"
	// LabelProtectStepPods set to "true" on a namespace turns on admission's step-pod guards there:
	// nobody may exec into a step's pod, create one, mount a granted Secret or get a step's token
	// (docs/admission.md#step-pods).
	LabelProtectStepPods = "custody.dev/protect-step-pods"

	// AnnotationApprovePrefix starts the annotation that approves a step: approve.custody.dev/<step>.
	// The grant approval annotation is AnnotationApproveGrant.
	AnnotationApprovePrefix = "approve.custody.dev/"
	// AnnotationApproveGrant approves a CredentialGrant.
	AnnotationApproveGrant = AnnotationApprovePrefix + "grant"
	// AnnotationRejectPrefix starts the annotation that rejects a step waiting for an approval:
	// reject.custody.dev/<step>, its value why (at most MaxRejectReasonLength characters). Admission
	// allows it from the same people as an approval, stamps it as a RejectionRecord, and never lets
	// it be changed or withdrawn.
	AnnotationRejectPrefix = "reject.custody.dev/"
	// MaxRejectReasonLength bounds the reason of a rejection.
	MaxRejectReasonLength = 256
	// AnnotationCreatedBy records the authenticated user who created the object; admission sets it
	// and nobody can change it.
	AnnotationCreatedBy = "custody.dev/created-by"
	// AnnotationCancelledBy records the authenticated user who set a Workflow's spec.cancel;
	// admission sets it in that request and nobody can change it.
	AnnotationCancelledBy = "custody.dev/cancelled-by"
	// AnnotationCancelReason is why a Workflow was cancelled, in the canceller's words (kubectl
	// custody cancel --reason, or the CronWorkflow that replaced it). It can be set up to and in the
	// request that sets spec.cancel, not changed afterwards; admission bounds it to
	// MaxCancelReasonLength characters and refuses one shaped like a credential.
	AnnotationCancelReason = "custody.dev/cancel-reason"
	// MaxCancelReasonLength bounds AnnotationCancelReason.
	MaxCancelReasonLength = 256
)
