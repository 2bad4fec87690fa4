// Package metrics defines Custody's Prometheus metrics on controller-runtime's registry, so they
// are served by the manager's (authenticated) metrics endpoint next to controller-runtime's own.
// Labels are small closed sets (phase, result, reason, controller), and for finished runs the
// namespace and the WorkflowTemplate or CronWorkflow they came from (as many as the definitions a
// cluster keeps): never a workflow name, and never anything derived from a credential.
package metrics

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// Label names used by several metrics.
const (
	labelReason = "reason"
	labelKind   = "kind"
	labelResult = "result"

	labelNamespace  = "namespace"
	labelDefinition = "definition"
	labelPhase      = "phase"
)

// DefinitionOf names what a run ran, for the labels of finished runs: workflowtemplate/NAME for a
// run of a template, cronworkflow/NAME for a CronWorkflow's run of inline steps, inline otherwise.
func DefinitionOf(wf *custodyv1alpha1.Workflow) string {
	if ref := wf.Spec.WorkflowTemplateRef; ref != nil {
		return "workflowtemplate/" + ref.Name
	}
	if c := wf.Labels[custodyv1alpha1.LabelCronWorkflow]; c != "" {
		return "cronworkflow/" + c
	}
	return "inline"
}

// ObserveApprovalWait records how long a step of wf waited for an approval: result is approved,
// rejected or timed_out.
func ObserveApprovalWait(wf *custodyv1alpha1.Workflow, result string, waited time.Duration) {
	ApprovalWait.WithLabelValues(wf.Namespace, DefinitionOf(wf), result).Observe(max(waited, 0).Seconds())
}

// ObserveFinished records that a run ended: counted, and its duration observed when it started.
func ObserveFinished(wf *custodyv1alpha1.Workflow) {
	labels := []string{wf.Namespace, DefinitionOf(wf), string(wf.Status.Phase)}
	WorkflowsFinished.WithLabelValues(labels...).Inc()
	if st, end := wf.Status.StartTime, wf.Status.CompletionTime; st != nil && end != nil {
		WorkflowDuration.WithLabelValues(labels...).Observe(end.Sub(st.Time).Seconds())
	}
}

var (
	// StepAttempts counts step attempts started.
	StepAttempts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "custody_step_attempts_total",
		Help: "Step attempts started (each retry is a new attempt).",
	})

	// StepAttemptsEnded counts step attempts that ended, by result (succeeded, failed, timed_out,
	// cancelled) and reason (the step reason, for example JobFailed).
	StepAttemptsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_step_attempts_ended_total",
		Help: "Step attempts that ended, by result and reason.",
	}, []string{labelResult, labelReason})

	// StepDuration observes how long step attempts ran, from Job creation to the end.
	StepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "custody_step_attempt_duration_seconds",
		Help:    "How long step attempts ran, from Job creation to the end, by result.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 16), // 0.5s .. ~4.5h
	}, []string{labelResult})

	// WorkflowsFinished counts runs that ended, by namespace, definition (DefinitionOf) and phase
	// (Succeeded, Failed, Cancelled): the rate of failed release runs, say.
	WorkflowsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_workflows_finished_total",
		Help: "Workflows that ended, by namespace, definition (workflowtemplate/NAME, cronworkflow/NAME or inline) and phase.",
	}, []string{labelNamespace, labelDefinition, labelPhase})

	// WorkflowDuration observes how long runs took, from their start to their end, by the same
	// labels: how long the nightly backup takes.
	WorkflowDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "custody_workflow_duration_seconds",
		Help:    "How long Workflows ran, from start to end, by namespace, definition and phase.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 18), // 1s .. ~36h
	}, []string{labelNamespace, labelDefinition, labelPhase})

	// ApprovalWait observes how long steps waited for an approver: from the step being ready (its
	// dependencies ended, its when true) to the approval's or rejection's stamp, or to its
	// approval.timeout.
	ApprovalWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "custody_step_approval_wait_seconds",
		Help: "How long steps waited for an approval, from ready to approved (result approved), rejected " +
			"(result rejected) or to their approval.timeout (result timed_out), by namespace and definition.",
		Buckets: prometheus.ExponentialBuckets(10, 2, 15), // 10s .. ~45h
	}, []string{labelNamespace, labelDefinition, labelResult})

	// ReconcileErrors counts reconcile errors by controller and a coarse reason from the API
	// error (Conflict, NotFound, Forbidden, Timeout, ...) or Other.
	ReconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_reconcile_errors_total",
		Help: "Reconcile errors by controller and reason.",
	}, []string{"controller", labelReason})

	// CronWorkflowSchedules counts the schedules CronWorkflows handled, by result: created (a run
	// was created), skipped (concurrencyPolicy Forbid, or the template is missing), missed (the
	// controller was down or past startingDeadlineSeconds) and replaced (a running run was
	// cancelled by concurrencyPolicy Replace).
	CronWorkflowSchedules = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_cronworkflow_schedules_total",
		Help: "Schedules CronWorkflows handled, by result (created, skipped, missed, replaced).",
	}, []string{labelResult})

	// IdentityRegistration observes how long after the controller saw an attempt's pod on a node
	// the attempt's SPIRE entry existed.
	IdentityRegistration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "custody_identity_registration_seconds",
		Help:    "Seconds from an attempt's pod observed on a node to its SPIRE entry created.",
		Buckets: latencyBuckets,
	})

	// IdentityRevocation observes how long after the controller saw an attempt end the attempt's
	// SPIRE entry was deleted.
	IdentityRevocation = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "custody_identity_revocation_seconds",
		Help:    "Seconds from an attempt's end observed to its SPIRE entry deleted.",
		Buckets: latencyBuckets,
	})

	// SPIREErrors counts failed SPIRE API calls by RPC and gRPC code.
	SPIREErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_spire_api_errors_total",
		Help: "Failed SPIRE server API calls, by RPC and gRPC code.",
	}, []string{"rpc", "code"})

	// IdentityEntries is the number of SPIRE entries with Custody's prefix, as of the last sweep.
	IdentityEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "custody_identity_entries",
		Help: "SPIRE registration entries with Custody's entry ID prefix (live step identities), as of the last sweep.",
	})

	// IdentityOrphansDeleted counts entries the sweep deleted because no running attempt owned them.
	IdentityOrphansDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "custody_identity_orphans_deleted_total",
		Help: "SPIRE entries with Custody's prefix that the sweep deleted because no running attempt owned them.",
	})
)

var (
	// CredentialsIssued counts credentials issued to step attempts, by kind.
	CredentialsIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_credentials_issued_total",
		Help: "Credentials issued to step attempts, by kind.",
	}, []string{labelKind})

	// CredentialRevocation observes how long after the controller saw an attempt end (or an
	// issuance expire, or its grant withdrawn) the credential was revoked.
	CredentialRevocation = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "custody_credential_revocation_seconds",
		Help:    "Seconds from the reason to revoke observed to the credential revoked, by kind.",
		Buckets: latencyBuckets,
	}, []string{labelKind})

	// CredentialsRevoked counts credentials revoked, by kind and reason (AttemptEnded, Expired,
	// GrantWithdrawn, WorkflowDeleted).
	CredentialsRevoked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custody_credentials_revoked_total",
		Help: "Credentials revoked, by kind and reason.",
	}, []string{labelKind, labelReason})
)

// latencyBuckets span 1 ms to about 40 s in steps of 1.5x, fine enough to tell 100 ms from 250 ms.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 1.5, 27)

// workflowPhases is the fixed set of phases the gauge reports, so every phase has a series.
var workflowPhases = []custodyv1alpha1.WorkflowPhase{
	custodyv1alpha1.WorkflowPending, custodyv1alpha1.WorkflowRunning, custodyv1alpha1.WorkflowSucceeded,
	custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled,
}

// workflowsDesc describes the workflows-by-phase gauge.
var workflowsDesc = prometheus.NewDesc("custody_workflows",
	"Workflows that exist now, by phase (a Workflow without status yet counts as Pending).",
	[]string{labelPhase}, nil)

// credentialsActiveDesc describes the live-credentials gauge.
var credentialsActiveDesc = prometheus.NewDesc("custody_credentials_active",
	"Credentials step attempts hold now (issued, not revoked), by kind.", []string{labelKind}, nil)

// stepsBlockedDesc describes the gauge of steps that wait on something outside the workflow.
var stepsBlockedDesc = prometheus.NewDesc("custody_steps_blocked",
	"Steps of unfinished workflows that wait on something outside the workflow now, by the reason in their status: "+
		"their attempt cannot be created or cannot get going, a grant keeps them waiting, or an approver.",
	[]string{"reason"}, nil)

// blockedReasons is the fixed set of reasons the blocked-steps gauge reports, so every reason has a
// series (an alert can say "> 0 for 15m").
var blockedReasons = append(slices.Clone(custodyv1alpha1.StepReasonsStuck),
	custodyv1alpha1.ReasonGrantNotFound, custodyv1alpha1.ReasonGrantNotCovered,
	custodyv1alpha1.ReasonGrantSuspended, custodyv1alpha1.ReasonGrantNotApproved, custodyv1alpha1.ReasonGrantExpired,
	custodyv1alpha1.ReasonSourceNotFound,
	custodyv1alpha1.ReasonSourceNotGrantable, custodyv1alpha1.ReasonImagePullSecretNotUsable, custodyv1alpha1.ReasonWaitingForApproval,
)

// grantsDesc describes the gauge of grants by condition.
var grantsDesc = prometheus.NewDesc("custody_grants",
	"CredentialGrants whose condition is True now, by condition: Ready (issuing), Stalled (cannot issue until "+
		"someone fixes or removes it), RotationOverdue (its source Secret is older than maxAge), Unused (it has "+
		"issued nothing for longer than unusedAfter), BroadAccess (its role reaches beyond the step: Secrets, pods, tokens, RBAC), "+
		"Unprotected (its namespace does not protect step pods: custody.dev/protect-step-pods), ReviewDue (its approval "+
		"lapses within its review window under approval.validFor, or lapsed: an approver is to approve it again).",
	[]string{"condition"}, nil)

// grantConditions is the fixed set of conditions the grants gauge reports, so every one has a
// series (an alert can say "> 0").
var grantConditions = []string{custodyv1alpha1.ConditionReady, custodyv1alpha1.ConditionStalled,
	custodyv1alpha1.ConditionRotationOverdue, custodyv1alpha1.ConditionUnused, custodyv1alpha1.ConditionBroadAccess,
	custodyv1alpha1.ConditionUnprotected, custodyv1alpha1.ConditionReviewDue}

var credentialKinds = []custodyv1alpha1.CredentialKind{custodyv1alpha1.CredentialKindKubernetesRole,
	custodyv1alpha1.CredentialKindSecret, custodyv1alpha1.CredentialKindSPIFFE}

// workflowCollector counts Workflows by phase (and the steps and credentials in their status) and
// CredentialGrants by condition from the manager's cache at scrape time, so the numbers are exact
// and need no bookkeeping in the reconcilers.
type workflowCollector struct {
	reader client.Reader
}

func (c workflowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- workflowsDesc
	ch <- credentialsActiveDesc
	ch <- stepsBlockedDesc
	ch <- grantsDesc
}

func (c workflowCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list custodyv1alpha1.WorkflowList
	if err := c.reader.List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(workflowsDesc, err)
		return
	}
	counts := map[custodyv1alpha1.WorkflowPhase]int{}
	active := map[custodyv1alpha1.CredentialKind]int{}
	blocked := map[string]int{}
	for i := range list.Items {
		ended := slices.Contains(endedPhases, list.Items[i].Status.Phase)
		for _, st := range list.Items[i].Status.Steps {
			for _, c := range st.Credentials {
				if c.RevokedAt == nil {
					active[c.Kind]++
				}
			}
			if !ended && !st.Phase.Ended() {
				blocked[st.Reason]++
			}
		}
		phase := list.Items[i].Status.Phase
		if phase == "" {
			phase = custodyv1alpha1.WorkflowPending
		}
		counts[phase]++
	}
	for _, p := range workflowPhases {
		ch <- prometheus.MustNewConstMetric(workflowsDesc, prometheus.GaugeValue, float64(counts[p]), string(p))
	}
	for _, k := range credentialKinds {
		ch <- prometheus.MustNewConstMetric(credentialsActiveDesc, prometheus.GaugeValue, float64(active[k]), string(k))
	}
	for _, r := range blockedReasons {
		ch <- prometheus.MustNewConstMetric(stepsBlockedDesc, prometheus.GaugeValue, float64(blocked[r]), r)
	}
	var grants custodyv1alpha1.CredentialGrantList
	if err := c.reader.List(ctx, &grants); err != nil {
		ch <- prometheus.NewInvalidMetric(grantsDesc, err)
		return
	}
	for _, cond := range grantConditions {
		n := 0
		for i := range grants.Items {
			if meta.IsStatusConditionTrue(grants.Items[i].Status.Conditions, cond) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(grantsDesc, prometheus.GaugeValue, float64(n), cond)
	}
}

// endedPhases are the phases of a workflow that ended.
var endedPhases = []custodyv1alpha1.WorkflowPhase{custodyv1alpha1.WorkflowSucceeded, custodyv1alpha1.WorkflowFailed,
	custodyv1alpha1.WorkflowCancelled}

// Register registers every Custody metric on reg; reader (the manager's cache) serves the
// workflows-by-phase gauge. Registering twice on the same registry is an error.
func Register(reg prometheus.Registerer, reader client.Reader) error {
	for _, c := range []prometheus.Collector{
		StepAttempts, StepAttemptsEnded, StepDuration, ReconcileErrors, workflowCollector{reader: reader},
		WorkflowsFinished, WorkflowDuration, ApprovalWait, CronWorkflowSchedules,
		IdentityRegistration, IdentityRevocation, SPIREErrors, IdentityEntries, IdentityOrphansDeleted,
		CredentialsIssued, CredentialsRevoked, CredentialRevocation,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Registry is controller-runtime's registry, which the manager's metrics endpoint serves.
var Registry = ctrlmetrics.Registry
