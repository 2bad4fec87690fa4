// Package webhook is Custody's admission: what the CRD schema cannot check because it needs to know
// who is asking or to look at other objects.
//
//   - The mutating webhook records the creator of every Workflow and CredentialGrant in
//     custody.dev/created-by, stamps every new approval or rejection annotation with the
//     approver's authenticated name and the time (a rejection keeps its reason), and clears a
//     grant's approval when its subjects or credential change or its expiry is extended.
//   - The validating webhook keeps the creator annotation unchangeable, allows an approval or a
//     rejection only from a listed approver who is not the creator (four-eyes), only while the
//     step waits and not both, and never lets one be changed or withdrawn, refuses a
//     CredentialGrant whose author could not already do what it hands out (RBAC's bind/escalate
//     rule, asked with SubjectAccessReviews as that user), refuses a Workflow that requests a
//     grant its author may not use, and deep-validates Workflow specs (cycles, `when`
//     expressions, references to parameters and results).
//   - WorkflowTemplates and CronWorkflows get the same deep validation and the same `use` check on
//     the grants their steps request; a run of a template is checked against the template (it
//     must exist, its parameters must match) and gets the custody.dev/template label, which
//     nobody else may set.
//
// Refusals are logged (user, object, check; never a value) and counted in
// custody_admission_refusals_total.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// The paths the webhook server serves; the webhook configurations in config/webhook name them.
const (
	PathMutate   = "/mutate-custody-dev-v1alpha1"
	PathValidate = "/validate-custody-dev-v1alpha1"
)

// Mutating and validating webhooks for every kind: one path each, the kind comes with the request.
// +kubebuilder:webhook:path=/mutate-custody-dev-v1alpha1,mutating=true,failurePolicy=fail,sideEffects=None,groups=custody.dev,resources=workflows;credentialgrants;workflowtemplates;cronworkflows,verbs=create;update,versions=v1alpha1,name=mutate.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10,reinvocationPolicy=Never
// +kubebuilder:webhook:path=/validate-custody-dev-v1alpha1,mutating=false,failurePolicy=fail,sideEffects=None,groups=custody.dev,resources=workflows;credentialgrants;workflowtemplates;cronworkflows,verbs=create;update,versions=v1alpha1,name=validate.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;clusterroles,verbs=get
// +kubebuilder:rbac:groups=scheduling.k8s.io,resources=priorityclasses,verbs=get

// Refusals counts admission refusals by kind and check; an alert on check="escalation" shows
// someone trying to hand out access they do not have.
var Refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "custody_admission_refusals_total",
	Help: "Writes of Custody objects refused by admission, by kind and check " +
		"(validation, creator, approval, escalation, use), and access into a step's pod refused (kind Pod, check steppod).",
}, []string{"kind", "check"})

func init() { ctrlmetrics.Registry.MustRegister(Refusals) }

// Checks a refusal is counted under.
const (
	checkValidation = "validation"
	checkCreator    = "creator"
	checkApproval   = "approval"
	checkEscalation = "escalation"
	checkUse        = "use"
)

// Policy is what the platform team decided for every namespace (the manager's flags).
type Policy struct {
	// BroadRolesNeedApproval refuses a grant whose role reaches beyond the step without an approval
	// in every namespace not labelled custody.dev/broad-roles-need-approval=false.
	BroadRolesNeedApproval bool
	// DefaultOnRevoke is the onRevoke of grants that set none (--grant-on-revoke; "" is Continue):
	// what admission's warnings of a step that outlives a grant's ttl say happens to it.
	DefaultOnRevoke custodyv1alpha1.RevokePolicy
}

// Setup registers both webhooks on the manager's webhook server.
func Setup(mgr ctrl.Manager, policy Policy) error {
	// SubjectAccessReviews are created, never cached: a client of their own, outside the
	// manager's cache and its read-your-writes tracking.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("admission client: %w", err)
	}
	h := &handler{
		decoder: admission.NewDecoder(mgr.GetScheme()),
		authz:   &authorizer{client: direct, reader: mgr.GetAPIReader()},
		now:     time.Now,
		policy:  policy,
	}
	// Who the controller is, so that only it may create a CronWorkflow's runs (the manager serves
	// admission and runs the controllers as one identity).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	review := &authenticationv1.SelfSubjectReview{}
	if err := direct.Create(ctx, review); err != nil {
		return fmt.Errorf("admission: asking the API server who the controller is (SelfSubjectReview): %w", err)
	}
	h.controller = review.Status.UserInfo.Username
	srv := mgr.GetWebhookServer()
	srv.Register(PathMutate, &admission.Webhook{Handler: admission.HandlerFunc(h.mutate)})
	srv.Register(PathValidate, &admission.Webhook{Handler: admission.HandlerFunc(h.validate)})
	srv.Register(PathStepPods, &admission.Webhook{Handler: &stepPodGuard{pods: mgr.GetAPIReader(), workflows: mgr.GetClient()}})
	pods := &stepPodCreation{stored: mgr.GetAPIReader(), workflows: mgr.GetClient(), decoder: admission.NewDecoder(mgr.GetScheme())}
	srv.Register(PathStepPodCreation, &admission.Webhook{Handler: pods})
	srv.Register(PathStepJobCreation, &admission.Webhook{Handler: &stepJobCreation{pods: pods, controller: h.controller}})
	srv.Register(PathStepTokens, &admission.Webhook{Handler: &stepTokenGuard{pods: pods}})
	srv.Register(PathStepTokenSecrets, &admission.Webhook{Handler: &stepTokenSecretGuard{pods: pods}})
	srv.Register(PathStepNames, &admission.Webhook{Handler: &stepNameGuard{controller: h.controller}})
	return nil
}

type handler struct {
	decoder admission.Decoder
	authz   *authorizer
	now     func() time.Time
	// controller is the user the controller (this manager) makes its requests as.
	controller string
	policy     Policy
}

// object is what the handlers need of either kind.
type object struct {
	meta      *metav1.ObjectMeta
	workflow  *custodyv1alpha1.Workflow
	grant     *custodyv1alpha1.CredentialGrant
	template  *custodyv1alpha1.WorkflowTemplate
	cron      *custodyv1alpha1.CronWorkflow
	kind      string
	forDenial string // "Workflow team-a/release" for messages
	// runSteps are the steps a new run executes (its own, or its template's), once checkRun read them.
	runSteps []custodyv1alpha1.Step
	// runTemplate is the template a new run of a template would resolve now, once checkRun read it.
	runTemplate *custodyv1alpha1.WorkflowTemplate
	// pullSecrets are the imagePullSecrets a new run pulls with (its own, or its template's).
	pullSecrets []custodyv1alpha1.ImagePullSecret
	// warnings are returned with an allowed request (kubectl prints them).
	warnings []string
}

func (h *handler) decode(req admission.Request, ext runtime.RawExtension) (*object, error) {
	o := &object{kind: req.Kind.Kind}
	switch req.Kind.Kind {
	case "Workflow":
		o.workflow = &custodyv1alpha1.Workflow{}
		if err := h.decoder.DecodeRaw(ext, o.workflow); err != nil {
			return nil, err
		}
		o.meta = &o.workflow.ObjectMeta
	case "CredentialGrant":
		o.grant = &custodyv1alpha1.CredentialGrant{}
		if err := h.decoder.DecodeRaw(ext, o.grant); err != nil {
			return nil, err
		}
		o.meta = &o.grant.ObjectMeta
	case "WorkflowTemplate":
		o.template = &custodyv1alpha1.WorkflowTemplate{}
		if err := h.decoder.DecodeRaw(ext, o.template); err != nil {
			return nil, err
		}
		o.meta = &o.template.ObjectMeta
	case "CronWorkflow":
		o.cron = &custodyv1alpha1.CronWorkflow{}
		if err := h.decoder.DecodeRaw(ext, o.cron); err != nil {
			return nil, err
		}
		o.meta = &o.cron.ObjectMeta
	default:
		return nil, fmt.Errorf("unexpected kind %s", req.Kind.Kind)
	}
	name := o.meta.Name
	if name == "" {
		name = o.meta.GenerateName + "*"
	}
	o.forDenial = fmt.Sprintf("%s %s/%s", o.kind, req.Namespace, name)
	return o, nil
}

// objects decodes the request's object and, for an update, the stored one.
func (h *handler) objects(req admission.Request) (cur, old *object, err error) {
	if cur, err = h.decode(req, req.Object); err != nil {
		return nil, nil, err
	}
	if req.Operation == admissionv1.Update {
		if old, err = h.decode(req, req.OldObject); err != nil {
			return nil, nil, err
		}
	}
	return cur, old, nil
}

// materialChange says whether an update changes what a grant hands out, to whom, or extends how
// long it lasts (expiresAt later, or removed); such a change clears its approval and is checked
// for escalation again. Moving expiresAt earlier only takes away.
func materialChange(cur, old *custodyv1alpha1.CredentialGrant) bool {
	extended := old.Spec.ExpiresAt != nil && (cur.Spec.ExpiresAt == nil || old.Spec.ExpiresAt.Before(cur.Spec.ExpiresAt))
	return extended || !equality.Semantic.DeepEqual(cur.Spec.Subjects, old.Spec.Subjects) ||
		!equality.Semantic.DeepEqual(cur.Spec.Credential, old.Spec.Credential)
}

// mutate records the creator (and who cancels a Workflow), stamps new approvals, and clears a
// grant's approval on a material change.
func (h *handler) mutate(ctx context.Context, req admission.Request) admission.Response {
	cur, old, err := h.objects(req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	ann := cur.meta.Annotations
	set := map[string]string{}
	var remove []string
	var warnings []string
	switch req.Operation {
	case admissionv1.Create:
		set[custodyv1alpha1.AnnotationCreatedBy] = req.UserInfo.Username
	case admissionv1.Update:
		creator := old.meta.Annotations[custodyv1alpha1.AnnotationCreatedBy]
		if _, ok := ann[custodyv1alpha1.AnnotationCreatedBy]; !ok && creator != "" {
			// A replace from a manifest that never had it: keep the record (changing it is refused).
			set[custodyv1alpha1.AnnotationCreatedBy] = creator
		}
		d0 := diffApprovals(old.meta.Annotations, ann)
		roleChanged, err := h.roleChangedSinceApproval(ctx, req, old, d0)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		for _, k := range renewals(d0, old, h.now(), roleChanged).added {
			switch {
			case isRejection(k):
				set[k] = stampRejection(req.UserInfo.Username, h.now(), ann[k])
			case k == custodyv1alpha1.AnnotationApproveGrant && cur.grant != nil && cur.grant.Spec.Credential.KubernetesRole != nil:
				// The approval covers the role's rules as they are now (credentials.RoleChanged).
				digest, err := h.roleDigest(ctx, req, cur)
				if err != nil {
					return admission.Errored(http.StatusInternalServerError, err)
				}
				set[k] = stampGrant(req.UserInfo.Username, h.now(), digest)
			default:
				set[k] = stamp(req.UserInfo.Username, h.now())
			}
		}
		if cur.grant != nil && materialChange(cur.grant, old.grant) {
			k := custodyv1alpha1.AnnotationApproveGrant
			if v, ok := old.meta.Annotations[k]; ok && ann[k] == v {
				remove = append(remove, k)
				warnings = append(warnings, "this change to the grant's subjects, credential or expiry cleared its approval "+
					"by "+stampedBy(k, v)+": an approver must approve it again before it issues anything")
			}
		}
	}
	stampCancel(req, cur, old, set)
	if cur.cron != nil {
		switch want := authorOf(req); {
		case req.Operation == admissionv1.Create || !equality.Semantic.DeepEqual(specOf(cur), specOf(old)):
			set[custodyv1alpha1.AnnotationAuthorizedBy] = want
		case ann[custodyv1alpha1.AnnotationAuthorizedBy] == "" && old.meta.Annotations[custodyv1alpha1.AnnotationAuthorizedBy] != "":
			set[custodyv1alpha1.AnnotationAuthorizedBy] = old.meta.Annotations[custodyv1alpha1.AnnotationAuthorizedBy]
		}
	}
	patches := annotationPatches(ann, set, remove)
	if wf := cur.workflow; wf != nil && wf.Spec.WorkflowTemplateRef != nil && req.Operation == admissionv1.Create &&
		wf.Labels[custodyv1alpha1.LabelTemplate] != wf.Spec.WorkflowTemplateRef.Name {
		patches = append(patches, labelPatch(wf.Labels, custodyv1alpha1.LabelTemplate, wf.Spec.WorkflowTemplateRef.Name))
	}
	if len(patches) == 0 {
		return admission.Allowed("")
	}
	return admission.Patched("", patches...).WithWarnings(warnings...)
}

// annotationPatches are the JSON patch operations that set and remove annotations.
func annotationPatches(ann, set map[string]string, remove []string) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	changed := false
	for k, v := range set {
		if cur, ok := ann[k]; !ok || cur != v {
			changed = true
		}
	}
	for _, k := range remove {
		if _, ok := ann[k]; ok {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if ann == nil {
		return []jsonpatch.JsonPatchOperation{{Operation: opAdd, Path: "/metadata/annotations", Value: set}}
	}
	for _, k := range sortedKeys(set) {
		ops = append(ops, jsonpatch.JsonPatchOperation{Operation: opAdd, Path: "/metadata/annotations/" + escape(k), Value: set[k]})
	}
	for _, k := range remove {
		if _, ok := ann[k]; ok {
			ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "remove", Path: "/metadata/annotations/" + escape(k)})
		}
	}
	return ops
}

// authorOf is the AnnotationAuthorizedBy value for the requesting user.
func authorOf(req admission.Request) string {
	return custodyv1alpha1.Author{User: req.UserInfo.Username, Groups: req.UserInfo.Groups}.String()
}

// authorizedBy refuses a CronWorkflow whose custody.dev/authorized-by is not what admission
// records: the writer of a new spec, or else the stored value.
func authorizedBy(req admission.Request, cur, old *object) *refusal {
	want := authorOf(req)
	if old != nil && equality.Semantic.DeepEqual(specOf(cur), specOf(old)) {
		want = old.meta.Annotations[custodyv1alpha1.AnnotationAuthorizedBy]
	}
	if got := cur.meta.Annotations[custodyv1alpha1.AnnotationAuthorizedBy]; got != want {
		return forbidden(checkCreator, "%s: the annotation %s records who wrote the spec (the identity whose right to use "+
			"grants each run is checked against) and is set by admission: remove it from the manifest",
			cur.forDenial, custodyv1alpha1.AnnotationAuthorizedBy)
	}
	return nil
}

// labelPatch sets one label.
func labelPatch(labels map[string]string, k, v string) jsonpatch.JsonPatchOperation {
	if labels == nil {
		return jsonpatch.JsonPatchOperation{Operation: opAdd, Path: "/metadata/labels", Value: map[string]string{k: v}}
	}
	return jsonpatch.JsonPatchOperation{Operation: opAdd, Path: "/metadata/labels/" + escape(k), Value: v}
}

const opAdd = "add"

func escape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// refusal is a refused request: the check it failed and the response.
type refusal struct {
	check string
	resp  admission.Response
}

func forbidden(check, format string, args ...any) *refusal {
	return &refusal{check: check, resp: admission.Denied(fmt.Sprintf(format, args...))}
}

func invalid(o *object, errs field.ErrorList) *refusal {
	gk := custodyv1alpha1.GroupVersion.WithKind(o.kind).GroupKind()
	st := apierrors.NewInvalid(gk, o.meta.Name, errs).ErrStatus
	return &refusal{check: checkValidation, resp: admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false, Result: &st}}}
}

// validate runs every check for the kind and operation; the first refusal answers.
func (h *handler) validate(ctx context.Context, req admission.Request) admission.Response {
	cur, old, err := h.objects(req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var r *refusal
	switch req.Operation {
	case admissionv1.Create:
		r, err = h.validateCreate(ctx, req, cur)
	case admissionv1.Update:
		r, err = h.validateUpdate(ctx, req, cur, old)
	}
	if err != nil {
		logf.FromContext(ctx).Error(err, "admission check failed", "kind", cur.kind, "namespace", req.Namespace,
			"name", cur.meta.Name, "user", req.UserInfo.Username)
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("%s: checking the request: %w", cur.forDenial, err))
	}
	if r == nil {
		return admission.Allowed("").WithWarnings(cur.warnings...)
	}
	Refusals.WithLabelValues(cur.kind, r.check).Inc()
	logf.FromContext(ctx).Info("admission refused", "kind", cur.kind, "namespace", req.Namespace,
		"name", cur.meta.Name, "user", req.UserInfo.Username, "operation", req.Operation, "check", r.check)
	return r.resp
}

func (h *handler) validateCreate(ctx context.Context, req admission.Request, o *object) (*refusal, error) {
	user := req.UserInfo.Username
	if got := o.meta.Annotations[custodyv1alpha1.AnnotationCreatedBy]; got != user {
		return forbidden(checkCreator, "%s: the annotation %s records who created the object and is set by admission; "+
			"it says %q but the request comes from %q: remove it from the manifest",
			o.forDenial, custodyv1alpha1.AnnotationCreatedBy, got, user), nil
	}
	if keys := approvalKeys(o.meta.Annotations); len(keys) > 0 {
		return forbidden(checkApproval, "%s: %s cannot be approved or rejected as it is created (annotations %s): the creator may "+
			"not approve their own object; an approver annotates it afterwards",
			o.forDenial, o.kind, strings.Join(sortedKeys(keys), ", ")), nil
	}
	switch {
	case o.workflow != nil:
		return h.validateWorkflow(ctx, req, o)
	case o.cron != nil:
		if r := authorizedBy(req, o, nil); r != nil {
			return r, nil
		}
		return h.validateDefinition(ctx, req, o, nil)
	case o.template != nil:
		return h.validateDefinition(ctx, req, o, nil)
	}
	if errs := ValidateGrantReferences(&o.grant.Spec); len(errs) > 0 {
		return invalid(o, errs), nil
	}
	return h.checkEscalation(ctx, req, o)
}

func (h *handler) validateUpdate(ctx context.Context, req admission.Request, cur, old *object) (*refusal, error) {
	was, wasSet := old.meta.Annotations[custodyv1alpha1.AnnotationCreatedBy]
	is, isSet := cur.meta.Annotations[custodyv1alpha1.AnnotationCreatedBy]
	if was != is || wasSet != isSet {
		return forbidden(checkCreator, "%s: the annotation %s records who created the object and cannot be changed "+
			"(it was %q; the request makes it %q)", cur.forDenial, custodyv1alpha1.AnnotationCreatedBy, was, is), nil
	}
	creator := was

	if cur.grant != nil {
		material := materialChange(cur.grant, old.grant)
		if material {
			if errs := ValidateGrantReferences(&cur.grant.Spec); len(errs) > 0 {
				return invalid(cur, errs), nil
			}
			if r, err := h.checkEscalation(ctx, req, cur); r != nil || err != nil {
				return r, err
			}
		} else if approvalDropped(old.grant, cur.grant) {
			if r, err := h.checkRoleReach(ctx, req, cur); r != nil || err != nil {
				return r, err
			}
		}
		if r := approvalPolicyChange(req, cur, old, creator); r != nil {
			return r, nil
		}
		if msg := shortenedApprovalLapses(old.grant, cur.grant, h.now()); msg != "" {
			cur.warnings = append(cur.warnings, msg)
		}
		roleChanged, err := h.roleChangedSinceApproval(ctx, req, old, diffApprovals(old.meta.Annotations, cur.meta.Annotations))
		if err != nil {
			return nil, err
		}
		return approvalsOfGrant(req, cur, old, creator, material, h.now(), roleChanged), nil
	}
	if cur.template != nil || cur.cron != nil {
		if d := diffApprovals(old.meta.Annotations, cur.meta.Annotations); len(d.added)+len(d.changed)+len(d.removed) > 0 {
			return forbidden(checkApproval, "%s: a %s is not approved or rejected; approve or reject the steps of its runs",
				cur.forDenial, cur.kind), nil
		}
		if cur.cron != nil {
			if r := authorizedBy(req, cur, old); r != nil {
				return r, nil
			}
		}
		if equality.Semantic.DeepEqual(specOf(cur), specOf(old)) {
			return nil, nil
		}
		return h.validateDefinition(ctx, req, cur, old)
	}
	return h.validateWorkflowUpdate(ctx, req, cur, old, creator)
}

// validateWorkflowUpdate checks a change to a Workflow: its run markers (template and
// CronWorkflow labels, on-behalf-of), a changed spec, and added approvals.
func (h *handler) validateWorkflowUpdate(ctx context.Context, req admission.Request, cur, old *object, creator string) (*refusal, error) {
	user := req.UserInfo.Username
	if r := templateLabel(cur); r != nil {
		return r, nil
	}
	if r := h.cronOwner(req, cur, old); r != nil {
		return r, nil
	}
	if r, err := h.cronRunUpdate(ctx, req.Namespace, cur, old); r != nil || err != nil {
		return r, err
	}
	if r := cancelRecord(user, cur, old); r != nil {
		return r, nil
	}
	if !equality.Semantic.DeepEqual(cur.workflow.Spec, old.workflow.Spec) {
		if errs := ValidateWorkflowSpec(&cur.workflow.Spec); len(errs) > 0 {
			return invalid(cur, errs), nil
		}
	}
	d := diffApprovals(old.meta.Annotations, cur.meta.Annotations)
	if r := unchangeable(cur, d, nil); r != nil {
		return r, nil
	}
	def, resolved := cur.workflow.Definition()
	for _, k := range d.added {
		if r, err := h.stepDecision(ctx, req, cur, old, creator, def.AllSteps(), resolved, k); r != nil || err != nil {
			return r, err
		}
	}
	return nil, nil
}

// stepDecision checks an approval or a rejection (annotation key k) added to a step of a run: the
// step needs an approval and waits for it, the user is one of its approvers and not the run's
// creator, the step was not decided the other way, and the value is admission's stamp. Approving a
// CronWorkflow's run is further refused to whoever wrote what it runs (four-eyes); rejecting it is
// not, since a rejection runs nothing.
func (h *handler) stepDecision(ctx context.Context, req admission.Request, cur, old *object, creator string,
	steps []custodyv1alpha1.Step, resolved bool, k string) (*refusal, error) {
	user := req.UserInfo.Username
	reject := isRejection(k)
	verb, other := "approve", custodyv1alpha1.AnnotationRejectPrefix
	stepName := strings.TrimPrefix(k, custodyv1alpha1.AnnotationApprovePrefix)
	if reject {
		verb, other = "reject", custodyv1alpha1.AnnotationApprovePrefix
		stepName = strings.TrimPrefix(k, custodyv1alpha1.AnnotationRejectPrefix)
	}
	if !resolved {
		return forbidden(checkApproval, "%s: the run's WorkflowTemplate is not resolved yet, so step %q cannot be %sd; "+
			"try again once status.template is set", cur.forDenial, stepName, verb), nil
	}
	if !reject {
		if by := cur.meta.Annotations[custodyv1alpha1.AnnotationOnBehalfOf]; by != "" && by == user {
			return forbidden(checkApproval, "step %q of %s runs on behalf of %s (the author of its CronWorkflow), who may not "+
				"approve it: an approval must come from someone else (four-eyes)", stepName, cur.forDenial, by), nil
		}
		if r, err := h.cronSpecAuthorApproves(ctx, req.Namespace, cur, user, stepName); r != nil || err != nil {
			return r, err
		}
	}
	var step *custodyv1alpha1.Step
	for i := range steps {
		if steps[i].Name == stepName {
			step = &steps[i]
		}
	}
	if step == nil || step.Approval == nil {
		if items := forEachItems(steps, cur.workflow, stepName); len(items) > 0 {
			return forbidden(checkApproval, "%s: %s %ss step %q, which runs once per item (forEach): %s each "+
				"item's step instead (%s)", cur.forDenial, k, verb, stepName, verb, strings.Join(items, ", ")), nil
		}
		return forbidden(checkApproval, "%s: %s %ss step %q, but the workflow has no step %q that needs an approval",
			cur.forDenial, k, verb, stepName, stepName), nil
	}
	what := fmt.Sprintf("step %q of %s", stepName, cur.forDenial)
	if msg := mayDecide(req.UserInfo, creator, &step.Approval.Approvers, what, verb); msg != "" {
		return forbidden(checkApproval, "%s", msg), nil
	}
	if r := notWaitingForApproval(cur, old, stepName, verb); r != nil {
		return r, nil
	}
	if v, decided := cur.meta.Annotations[other+stepName]; decided {
		if reject {
			return forbidden(checkApproval, "%s: step %q was approved by %s (%s%s) and starts: to stop it, cancel the run "+
				"(kubectl custody cancel %s --reason ...)", cur.forDenial, stepName, stampedBy(other+stepName, v), other, stepName,
				cur.meta.Name), nil
		}
		return forbidden(checkApproval, "%s: step %q was rejected by %s (%s%s): it does not run, and a rejection "+
			"cannot be overruled; start a new run", cur.forDenial, stepName, stampedBy(other+stepName, v), other, stepName), nil
	}
	if r := stampedByUser(cur, k, user); r != nil {
		return r, nil
	}
	if reject {
		var rec custodyv1alpha1.RejectionRecord // as stamped: ParseRejection would clip the reason
		_ = json.Unmarshal([]byte(cur.meta.Annotations[k]), &rec)
		if msg := reasonProblem(rec.Reason, custodyv1alpha1.MaxRejectReasonLength); msg != "" {
			return forbidden(checkValidation, "%s: the reason of the rejection %s %s", cur.forDenial, k, msg), nil
		}
	}
	return nil, nil
}

// notWaitingForApproval refuses an approval of a step that does not wait for one (in the stored
// status): an approver approves what the step will run, which is settled only once the steps it
// depends on ended (the results it reads are then in status, and its when was true). An
// approval given earlier would approve inputs nobody has seen yet.
func notWaitingForApproval(cur, old *object, stepName, verb string) *refusal {
	wf := old.workflow
	where := "it has not been reached"
	for _, st := range wf.Status.Steps {
		if st.Name != stepName {
			continue
		}
		switch {
		case st.Phase == custodyv1alpha1.StepWaitingForApproval:
			return nil
		case st.Phase.Ended():
			return forbidden(checkApproval, "%s: step %q already ended (%s, %s): there is nothing to %s", cur.forDenial, stepName,
				st.Phase, st.Reason, verb)
		case st.Phase == custodyv1alpha1.StepPending:
			where = "it is Pending, " + st.Reason
		default:
			return forbidden(checkApproval, "%s: step %q is %s, not waiting for an approval", cur.forDenial, stepName, st.Phase)
		}
	}
	return forbidden(checkApproval, "%s: step %q does not wait for an approval yet (%s): an approval is for what the step "+
		"will run, settled only once the steps it depends on ended; %s it when it is WaitingForApproval (kubectl custody get %s)",
		cur.forDenial, stepName, where, verb, wf.Name)
}

// unchangeable refuses changing or withdrawing an approval (allowed lists keys admission itself
// cleared).
func unchangeable(o *object, d approvalDiff, allowed []string) *refusal {
	if len(d.changed) > 0 {
		return forbidden(checkApproval, "%s: the %s %s was already given and cannot be changed; "+
			"the stored value records who gave it and when", o.forDenial, decisionNoun(d.changed[0]), strings.Join(d.changed, ", "))
	}
	for _, k := range d.removed {
		if !slices.Contains(allowed, k) {
			return forbidden(checkApproval, "%s: the %s %s cannot be withdrawn, so that nobody can replace "+
				"an approver's decision with their own; to stop a workflow set spec.cancel, to stop a grant set spec.suspended",
				o.forDenial, decisionNoun(k), k)
		}
	}
	return nil
}

// stampedByUser refuses an approval or rejection whose value is not admission's stamp for this
// user: only happens when the mutating webhook did not run.
func stampedByUser(o *object, key, user string) *refusal {
	if by := stampedBy(key, o.meta.Annotations[key]); by != user {
		return forbidden(checkApproval, "%s: the %s %s must be stamped by admission with the approver's name; "+
			"it names %q but the request comes from %q (is the mutating webhook installed?)", o.forDenial, decisionNoun(key), key, by, user)
	}
	return nil
}

// approvalPolicyChange refuses weakening a grant's approval requirement (dropping it, or changing
// who may approve) by anyone but one of its current approvers.
func approvalPolicyChange(req admission.Request, cur, old *object, creator string) *refusal {
	was := old.grant.Spec.Approval
	if was == nil || !was.Required {
		return nil // adding a requirement never weakens anything
	}
	is := cur.grant.Spec.Approval
	if is != nil && is.Required && equality.Semantic.DeepEqual(is.Approvers, was.Approvers) && !longerValidity(was, is) {
		return nil
	}
	if msg := mayDecide(req.UserInfo, creator, was.Approvers, cur.forDenial, "approve"); msg != "" {
		return forbidden(checkApproval, "%s: spec.approval can only be removed, its approvers changed or its validFor "+
			"lengthened by one of its current approvers: %s", cur.forDenial, msg)
	}
	return nil
}

// shortenedApprovalLapses warns of an update that sets or shortens approval.validFor so that the
// recorded approval lapses at once, or is due for review at once (as when a platform's rule on
// approvals, Helm grantPolicy.approvalMaxValidFor, brings an old grant within it): the grant then
// issues nothing, or soon nothing, until an approver approves it again. "" otherwise.
func shortenedApprovalLapses(old, cur *custodyv1alpha1.CredentialGrant, now time.Time) string {
	is, was := cur.Spec.Approval, old.Spec.Approval
	rec := cur.Status.Approval
	if rec == nil || is == nil || is.ValidFor == nil || (was != nil && was.ValidFor != nil && was.ValidFor.Duration <= is.ValidFor.Duration) ||
		old.ApprovalReviewable(now) {
		return ""
	}
	switch lapses, from := cur.ApprovalLapsesAt(), cur.ApprovalReviewFrom(); {
	case !now.Before(*lapses):
		return fmt.Sprintf("CredentialGrant %s: its approval by %s, given at %s, lapses at once under approval.validFor %s: "+
			"it issues nothing, and the steps that request it wait, until an approver approves it again",
			cur.Name, rec.ApprovedBy, rec.ApprovedAt.UTC().Format(time.RFC3339), is.ValidFor.Duration)
	case !now.Before(*from):
		return fmt.Sprintf("CredentialGrant %s: its approval by %s, given at %s, is due for review at once under approval.validFor %s: "+
			"it lapses at %s unless an approver approves it again", cur.Name, rec.ApprovedBy,
			rec.ApprovedAt.UTC().Format(time.RFC3339), is.ValidFor.Duration, lapses.UTC().Format(time.RFC3339))
	}
	return ""
}

// approvalDropped says whether an update removes a grant's approval requirement.
func approvalDropped(old, cur *custodyv1alpha1.CredentialGrant) bool {
	return old.Spec.Approval != nil && old.Spec.Approval.Required && (cur.Spec.Approval == nil || !cur.Spec.Approval.Required)
}

// longerValidity says whether an approval would stand longer under is than under was: its
// validFor removed or lengthened.
func longerValidity(was, is *custodyv1alpha1.GrantApproval) bool {
	return was.ValidFor != nil && (is.ValidFor == nil || is.ValidFor.Duration > was.ValidFor.Duration)
}

// renewals counts a grant's approval that is due for review (it lapses under approval.validFor
// within its review window, or lapsed) or no longer stands (its role changed since: roleChanged)
// and is given again as a new approval, not a change of the old one: an approver may approve the
// grant again, and admission stamps the new approval.
func renewals(d approvalDiff, old *object, now time.Time, roleChanged bool) approvalDiff {
	k := custodyv1alpha1.AnnotationApproveGrant
	if old == nil || old.grant == nil || !old.grant.ApprovalReviewable(now) && !roleChanged || !slices.Contains(d.changed, k) {
		return d
	}
	d.changed = slices.DeleteFunc(slices.Clone(d.changed), func(c string) bool { return c == k })
	d.added = append(slices.Clone(d.added), k)
	slices.Sort(d.added)
	return d
}

// notYetReviewable refuses approving again a grant whose approval lapses (approval.validFor) but
// is not yet due for review, saying from when it may be.
func notYetReviewable(cur, old *object, d approvalDiff) *refusal {
	k := custodyv1alpha1.AnnotationApproveGrant
	if !slices.Contains(d.changed, k) || old.grant.ApprovalReviewFrom() == nil {
		return nil
	}
	rec := old.grant.Status.Approval
	return forbidden(checkApproval, "%s: its approval by %s stands until %s (approval.validFor); an approver may approve it "+
		"again from %s, the last quarter of validFor (at most 14 days) before it lapses", cur.forDenial, rec.ApprovedBy,
		old.grant.ApprovalLapsesAt().UTC().Format(time.RFC3339), old.grant.ApprovalReviewFrom().UTC().Format(time.RFC3339))
}

// roleOf reads the role of a role grant under admission as the grant controller reads it, and
// returns the grant in the request's namespace (a new object's may be empty).
func (h *handler) roleOf(ctx context.Context, req admission.Request, grant *custodyv1alpha1.CredentialGrant) (
	g *custodyv1alpha1.CredentialGrant, rules []rbacv1.PolicyRule, exists bool, err error) {
	g = grant.DeepCopy()
	g.Namespace = req.Namespace
	rules, exists, err = credentials.Role(ctx, h.authz.reader, g)
	return g, rules, exists, err
}

// roleDigest is the digest of the rules of a role grant's role as they are now
// (credentials.RulesDigest; a role that does not exist has none).
func (h *handler) roleDigest(ctx context.Context, req admission.Request, o *object) (string, error) {
	g, rules, _, err := h.roleOf(ctx, req, o.grant)
	if err != nil {
		return "", fmt.Errorf("reading the role of CredentialGrant %s/%s, whose approval covers its rules: %w", req.Namespace, g.Name, err)
	}
	return credentials.RulesDigest(rules), nil
}

// roleChangedSinceApproval says whether an update (with approval annotations d) replaces the
// approval of a role grant whose role allows more than that approval covered (which then no
// longer stands, and an approver may approve the grant again). The role is read only then.
func (h *handler) roleChangedSinceApproval(ctx context.Context, req admission.Request, old *object, d approvalDiff) (bool, error) {
	k := custodyv1alpha1.AnnotationApproveGrant
	if old == nil || old.grant == nil || old.grant.Spec.Credential.KubernetesRole == nil || !slices.Contains(d.changed, k) {
		return false, nil
	}
	g, rules, exists, err := h.roleOf(ctx, req, old.grant)
	if err != nil || !exists {
		return false, err
	}
	changed, _ := credentials.RoleChanged(g, rules)
	return changed, nil
}

// approvalsOfGrant checks approval annotation changes on a grant.
func approvalsOfGrant(req admission.Request, cur, old *object, creator string, material bool, now time.Time,
	roleChanged bool) *refusal {
	d := renewals(diffApprovals(old.meta.Annotations, cur.meta.Annotations), old, now, roleChanged)
	var cleared []string
	if material {
		cleared = []string{custodyv1alpha1.AnnotationApproveGrant}
	}
	if r := notYetReviewable(cur, old, d); r != nil {
		return r
	}
	if r := unchangeable(cur, d, cleared); r != nil {
		return r
	}
	for _, k := range d.added {
		if isRejection(k) {
			return forbidden(checkApproval, "%s: a CredentialGrant is not rejected (%s): one that is not approved issues "+
				"nothing; to stop an approved one, set spec.suspended", cur.forDenial, k)
		}
		if k != custodyv1alpha1.AnnotationApproveGrant {
			return forbidden(checkApproval, "%s: a CredentialGrant is approved with the annotation %s, not %s",
				cur.forDenial, custodyv1alpha1.AnnotationApproveGrant, k)
		}
		a := cur.grant.Spec.Approval
		if a == nil || !a.Required {
			return forbidden(checkApproval, "%s does not require an approval (spec.approval.required is not true)", cur.forDenial)
		}
		if msg := mayDecide(req.UserInfo, creator, a.Approvers, cur.forDenial, "approve"); msg != "" {
			return forbidden(checkApproval, "%s", msg)
		}
		if r := stampedByUser(cur, k, req.UserInfo.Username); r != nil {
			return r
		}
	}
	return nil
}

// checkEscalation refuses a grant whose author could not already do what it hands out. A grant
// that passes is warned of a role that does not exist, or reaches beyond the step
// (credentials.Reach): the author may mean it, and the grant's status says so too.
func (h *handler) checkEscalation(ctx context.Context, req admission.Request, o *object) (*refusal, error) {
	g := o.grant
	missing, err := h.authz.checkGrant(ctx, req.UserInfo, req.Namespace, &g.Spec)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return forbidden(checkEscalation, "CredentialGrant %s/%s: %s", req.Namespace, g.Name, strings.Join(missing, "; ")), nil
	}
	h.warnUnprotected(ctx, req, o)
	h.warnCronRuns(ctx, req, o)
	return h.checkRoleReach(ctx, req, o)
}

// warnCronRuns warns of a new grant, or one whose subjects or credential changed, that would keep
// steps of a CronWorkflow's runs waiting although they request it: typically subjects that name the
// CronWorkflow as a workflow (its runs are named after it and a time), or that no longer select its
// runs. The CronWorkflow says so too (Stalled); this tells whoever writes the grant. Best effort:
// what cannot be read is not warned of.
func (h *handler) warnCronRuns(ctx context.Context, req admission.Request, o *object) {
	g := o.grant.DeepCopy()
	g.Namespace = req.Namespace
	var crons custodyv1alpha1.CronWorkflowList
	if err := h.authz.reader.List(ctx, &crons, client.InNamespace(req.Namespace)); err != nil {
		logf.FromContext(ctx).V(1).Info("not checking CronWorkflows that cannot be read", "error", err.Error())
		return
	}
	for i := range crons.Items {
		cw := &crons.Items[i]
		steps, tpl, err := credentials.CronDefinition(ctx, h.authz.reader, cw)
		if err != nil {
			continue // a missing template stalls the CronWorkflow already
		}
		for _, r := range credentials.CheckRuns(credentials.CronRun(cw, tpl), steps, map[string]*custodyv1alpha1.CredentialGrant{g.Name: g},
			h.now()) {
			o.warnings = append(o.warnings, fmt.Sprintf("CronWorkflow %s: %s", cw.Name, r.Message))
		}
	}
}

// warnUnprotected warns of a new grant, or one whose credential changed, in a namespace that does
// not protect step pods, as the grant's Unprotected condition will say. A namespace that cannot be
// read is not warned of.
func (h *handler) warnUnprotected(ctx context.Context, req admission.Request, o *object) {
	labels, err := credentials.NamespaceLabels(ctx, h.authz.reader, req.Namespace)
	if err != nil {
		logf.FromContext(ctx).V(1).Info("not checking a namespace that cannot be read", "namespace", req.Namespace, "error", err.Error())
		return
	}
	if !credentials.StepPodsProtected(labels) {
		g := o.grant.DeepCopy()
		g.Namespace = req.Namespace
		o.warnings = append(o.warnings, credentials.UnprotectedMessage(g))
	}
}

// checkRoleReach refuses a role grant whose role reaches beyond the step (credentials.Reach) and that
// does not require an approval, in a namespace that asks such grants to; otherwise it warns of
// what the grant's status will say of its role. The role is read as the grant controller reads
// it; one that cannot be read is neither warned of nor refused (the controller refuses it then).
func (h *handler) checkRoleReach(ctx context.Context, req admission.Request, o *object) (*refusal, error) {
	if o.grant.Spec.Credential.KubernetesRole == nil {
		return nil, nil
	}
	g, rules, exists, err := h.roleOf(ctx, req, o.grant)
	switch {
	case err != nil:
		logf.FromContext(ctx).V(1).Info("not checking a role that cannot be read", "grant", g.Name, "error", err.Error())
		return nil, nil
	case !exists:
		o.warnings = append(o.warnings, credentials.RoleRefusal(g, false).Message+" (yet): the grant issues nothing, and "+
			"the steps that request it wait, until it does")
		return nil, nil
	}
	reach := credentials.Reach(rules)
	if len(reach) == 0 {
		return nil, nil
	}
	needed, err := credentials.ApprovalNeeded(ctx, h.authz.reader, g, reach, h.policy.BroadRolesNeedApproval)
	if err != nil {
		return nil, err
	}
	if needed != nil {
		return forbidden(checkApproval, "CredentialGrant %s/%s: %s", req.Namespace, g.Name, needed.Message), nil
	}
	o.warnings = append(o.warnings, credentials.ReachMessage(g, reach))
	return nil, nil
}

// checkUse refuses an object whose steps request grants its author may not use.
func (h *handler) checkUse(ctx context.Context, req admission.Request, o *object, steps []custodyv1alpha1.Step) (*refusal, error) {
	lacking, err := GrantsNotUsable(ctx, h.authz.client, req.UserInfo, req.Namespace, steps)
	if err != nil || len(lacking) == 0 {
		return nil, err
	}
	return forbidden(checkUse, "%s: %s may not use the CredentialGrants %s: a step can request a grant's "+
		"credential only if the author of its %s has %q on it (credentialgrants, group %s)",
		o.forDenial, req.UserInfo.Username, strings.Join(lacking, ", "), o.kind, VerbUse, custodyv1alpha1.GroupVersion.Group), nil
}

// validateWorkflow deep-validates a new Workflow; a run of a template is checked against the
// template, which must exist. Either way its author must be allowed to use the grants it requests.
func (h *handler) validateWorkflow(ctx context.Context, req admission.Request, o *object) (*refusal, error) {
	wf := o.workflow
	errs := ValidateWorkflowSpec(&wf.Spec)
	errs = append(errs, LiteralErrors(WorkflowLiterals(field.NewPath("spec"), &wf.Spec), nil)...)
	if len(errs) > 0 {
		return invalid(o, errs), nil
	}
	if r := templateLabel(o); r != nil {
		return r, nil
	}
	if r := cancelRecord(req.UserInfo.Username, o, nil); r != nil {
		return r, nil
	}
	if r := h.cronOwner(req, o, nil); r != nil {
		return r, nil
	}
	if r, err := h.cronRun(ctx, req.Namespace, o); r != nil || err != nil {
		return r, err
	}
	if r, err := h.checkRun(ctx, req, o, field.NewPath("spec"), &wf.Spec, false); r != nil || err != nil {
		return r, err
	}
	if r, err := h.checkReuse(ctx, req.Namespace, o); r != nil || err != nil {
		return r, err
	}
	steps := custodyv1alpha1.ApplyStepDefaults(o.runSteps, o.stepDefaults())
	if wf.Name != "" {
		run := wf.DeepCopy()
		run.Namespace = req.Namespace
		run.Spec.WorkflowTemplateRef, run.Spec.Steps, run.Spec.Finally = nil, steps, nil
		o.warnings = append(o.warnings, h.grantCheck(ctx, req.Namespace, steps).Run(run, steps)...)
	}
	o.warnings = append(o.warnings, h.pullSecretWarnings(ctx, req.Namespace, o.pullSecrets)...)
	o.warnings = append(o.warnings, h.priorityClassWarnings(ctx, steps)...)
	if wf.Spec.WorkflowTemplateRef == nil {
		o.warnings = append(o.warnings, ValueWarnings(field.NewPath("spec"), wf.Spec.Steps, wf.Spec.Finally, nil)...)
	}
	return nil, nil
}

// checkReuse refuses a run whose reuseFrom names no run it can take succeeded steps from
// (ReuseProblem), and warns of each step that succeeded there but will run again (PlanReuse; a
// run of a template is planned against the template as it is now, which the controller resolves
// moments later). The controller checks again, against the template as it resolves it.
func (h *handler) checkReuse(ctx context.Context, ns string, o *object) (*refusal, error) {
	wf := o.workflow
	if wf.Spec.ReuseFrom == "" {
		return nil, nil
	}
	path := field.NewPath("spec", "reuseFrom")
	src := &custodyv1alpha1.Workflow{}
	err := h.authz.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: wf.Spec.ReuseFrom}, src)
	switch {
	case apierrors.IsNotFound(err):
		return invalid(o, field.ErrorList{field.NotFound(path, wf.Spec.ReuseFrom)}), nil
	case err != nil:
		return nil, fmt.Errorf("reading Workflow %s: %w", wf.Spec.ReuseFrom, err)
	}
	if msg := custodyv1alpha1.ReuseProblem(wf, src); msg != "" {
		return invalid(o, field.ErrorList{field.Invalid(path, wf.Spec.ReuseFrom, msg)}), nil
	}
	run := wf
	if wf.Spec.WorkflowTemplateRef != nil && o.runTemplate != nil {
		run = wf.DeepCopy()
		run.Status.Template = &custodyv1alpha1.ResolvedTemplate{Name: o.runTemplate.Name, Spec: o.runTemplate.Spec}
	}
	if plan, ok := custodyv1alpha1.PlanReuse(run, src); ok {
		for _, a := range plan.Again {
			o.warnings = append(o.warnings, fmt.Sprintf("step %q succeeded in workflow %s but will run again: %s", a.Step, src.Name, a.Why))
		}
	}
	return nil, nil
}

// forEachItems returns the steps (of a run's steps as they run) that run the items of the forEach
// step named step.
func forEachItems(steps []custodyv1alpha1.Step, wf *custodyv1alpha1.Workflow, step string) []string {
	var items []string
	for _, st := range steps {
		if forEach, _ := wf.ForEachOf(st.Name); forEach == step {
			items = append(items, st.Name)
		}
	}
	return items
}

// pullSecretWarnings says, as a warning, when a new run's steps would wait for its imagePullSecrets
// as things stand (one does not exist, or lacks the opt-in label): the Secret may be created or
// labelled after the run. Best effort, as grantWarnings.
func (h *handler) pullSecretWarnings(ctx context.Context, ns string, secrets []custodyv1alpha1.ImagePullSecret) []string {
	if len(secrets) == 0 {
		return nil
	}
	refusal, err := credentials.PullSecretsRefusal(ctx, h.authz.reader, ns, secrets)
	if err != nil {
		logf.FromContext(ctx).V(1).Info("not warning about imagePullSecrets that cannot be read", "error", err.Error())
		return nil
	}
	if refusal == nil {
		return nil
	}
	return []string{"every step will wait until this changes: " + refusal.Message}
}

// stepDefaults are the stepDefaults of what a new run executes: its template's, or its own.
func (o *object) stepDefaults() *custodyv1alpha1.StepDefaults {
	switch {
	case o.runTemplate != nil:
		return o.runTemplate.Spec.StepDefaults
	case o.cron != nil:
		return o.cron.Spec.WorkflowSpec.StepDefaults
	}
	return o.workflow.Spec.StepDefaults
}

// priorityClassWarnings says, as a warning, when a new run's steps (with their stepDefaults) name a PriorityClass
// (priorityClassName, their own or stepDefaults') that does not exist: the Job controller cannot
// create their pods until it does, and the steps would only say so once they start. The class may
// be created after the run. Best effort, as grantWarnings.
func (h *handler) priorityClassWarnings(ctx context.Context, runSteps []custodyv1alpha1.Step) []string {
	var classes []string
	steps := map[string][]string{}
	for _, st := range runSteps {
		if c := st.PriorityClassName; c != "" {
			if steps[c] == nil {
				classes = append(classes, c)
			}
			steps[c] = append(steps[c], st.Name)
		}
	}
	var out []string
	for _, c := range classes {
		err := h.authz.reader.Get(ctx, client.ObjectKey{Name: c}, &schedulingv1.PriorityClass{})
		switch {
		case apierrors.IsNotFound(err):
			which := "step " + strconv.Quote(steps[c][0])
			if len(steps[c]) > 1 {
				which = "steps " + strings.Join(quoted(steps[c]), ", ")
			}
			out = append(out, fmt.Sprintf("PriorityClass %q does not exist: the pods of %s cannot be created until it does", c, which))
		case err != nil:
			logf.FromContext(ctx).V(1).Info("not warning about a PriorityClass that cannot be read", "priorityClass", c, "error", err.Error())
		}
	}
	return out
}

// quoted returns the names each in double quotes.
func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}

// checkRun checks what a run would execute, at path: a run of a template against the template
// (it must exist unless missingOK, and the parameters must match it), and the author's `use` on
// the grants its steps request.
func (h *handler) checkRun(ctx context.Context, req admission.Request, o *object, path *field.Path,
	ws *custodyv1alpha1.WorkflowSpec, missingOK bool) (*refusal, error) {
	ref := ws.WorkflowTemplateRef
	if ref == nil {
		o.runSteps, o.pullSecrets = ws.InlineSteps(), ws.ImagePullSecrets
		return h.checkUse(ctx, req, o, o.runSteps)
	}
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	err := h.authz.reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: ref.Name}, tpl)
	switch {
	case apierrors.IsNotFound(err) && missingOK:
		return nil, nil
	case apierrors.IsNotFound(err):
		return invalid(o, field.ErrorList{field.NotFound(path.Child("workflowTemplateRef", "name"), ref.Name)}), nil
	case err != nil:
		return nil, fmt.Errorf("reading WorkflowTemplate %s: %w", ref.Name, err)
	}
	if err := custodyv1alpha1.CheckParameters(tpl.Spec.Parameters, ws.Parameters); err != nil {
		return invalid(o, field.ErrorList{field.Invalid(path.Child("parameters"), nil,
			fmt.Sprintf("WorkflowTemplate %s: %v", ref.Name, err))}), nil
	}
	// The items of forEach steps that come from parameters are known now.
	if err := custodyv1alpha1.CheckItems(&tpl.Spec, custodyv1alpha1.ParameterValues(tpl.Spec.Parameters, ws.Parameters)); err != nil {
		return invalid(o, field.ErrorList{field.Invalid(path.Child("parameters"), nil,
			fmt.Sprintf("WorkflowTemplate %s: %v", ref.Name, err))}), nil
	}
	o.runSteps, o.pullSecrets, o.runTemplate = tpl.Spec.AllSteps(), ws.ImagePullSecrets, tpl
	if len(o.pullSecrets) == 0 {
		o.pullSecrets = tpl.Spec.ImagePullSecrets
	}
	return h.checkUse(ctx, req, o, o.runSteps)
}

// validateDefinition deep-validates a WorkflowTemplate or CronWorkflow and checks that its author
// may use the grants its steps request (for a CronWorkflow of a template: the template's, if it
// exists; its runs are created by the controller). old is the object before an update (nil on
// create): credential-shaped text it already had is let through (LiteralErrors).
func (h *handler) validateDefinition(ctx context.Context, req admission.Request, o, old *object) (*refusal, error) {
	if o.template != nil {
		errs := ValidateWorkflowTemplateSpec(&o.template.Spec)
		var had []Literal
		if old != nil && old.template != nil {
			had = TemplateLiterals(&old.template.Spec)
		}
		errs = append(errs, LiteralErrors(TemplateLiterals(&o.template.Spec), had)...)
		if len(errs) > 0 {
			return invalid(o, errs), nil
		}
		spec := &o.template.Spec
		o.warnings = append(o.warnings, ValueWarnings(field.NewPath("spec"), spec.Steps, spec.Finally,
			append([]custodyv1alpha1.ParameterSpec{}, spec.Parameters...))...)
		if r, err := h.checkUse(ctx, req, o, spec.AllSteps()); r != nil || err != nil {
			return r, err
		}
		tpl := o.template.DeepCopy()
		tpl.Namespace = req.Namespace
		steps := custodyv1alpha1.ApplyStepDefaults(spec.AllSteps(), spec.StepDefaults)
		o.warnings = append(o.warnings, h.grantCheck(ctx, req.Namespace, steps).Definition(credentials.TemplateRun(tpl), steps)...)
		return nil, nil
	}
	spec := &o.cron.Spec
	errs := ValidateCronWorkflowSpec(spec)
	var had []Literal
	if old != nil && old.cron != nil {
		had = WorkflowLiterals(field.NewPath("spec", "workflowSpec"), &old.cron.Spec.WorkflowSpec)
	}
	errs = append(errs, LiteralErrors(WorkflowLiterals(field.NewPath("spec", "workflowSpec"), &spec.WorkflowSpec), had)...)
	if len(errs) > 0 {
		return invalid(o, errs), nil
	}
	if spec.WorkflowSpec.WorkflowTemplateRef == nil {
		o.warnings = append(o.warnings, ValueWarnings(field.NewPath("spec", "workflowSpec"), spec.WorkflowSpec.Steps,
			spec.WorkflowSpec.Finally, nil)...)
	}
	// A CronWorkflow may come before its template (GitOps order): schedules are skipped until it
	// exists.
	if r, err := h.checkRun(ctx, req, o, field.NewPath("spec", "workflowSpec"), &spec.WorkflowSpec, true); r != nil || err != nil {
		return r, err
	}
	cw := o.cron.DeepCopy()
	cw.Namespace = req.Namespace
	steps := custodyv1alpha1.ApplyStepDefaults(o.runSteps, o.stepDefaults())
	o.warnings = append(o.warnings, h.grantCheck(ctx, req.Namespace, steps).Definition(credentials.CronRun(cw, o.runTemplate), steps)...)
	return nil, nil
}

// templateLabel refuses a custody.dev/template label that does not name the run's template:
// grants select a template's runs by it.
func templateLabel(o *object) *refusal {
	v, set := o.meta.Labels[custodyv1alpha1.LabelTemplate]
	ref := o.workflow.Spec.WorkflowTemplateRef
	switch {
	case !set:
		return nil
	case ref == nil:
		return forbidden(checkValidation, "%s: the label %s marks runs of a WorkflowTemplate (grants select them by it); "+
			"a Workflow with inline steps may not carry it", o.forDenial, custodyv1alpha1.LabelTemplate)
	case v != ref.Name:
		return forbidden(checkValidation, "%s: the label %s must name the run's WorkflowTemplate %q, not %q",
			o.forDenial, custodyv1alpha1.LabelTemplate, ref.Name, v)
	}
	return nil
}

// cronRun checks what marks a Workflow as a run of a CronWorkflow. Grants may select a
// CronWorkflow's runs by the label custody.dev/cronworkflow, and the annotation
// custody.dev/on-behalf-of keeps the CronWorkflow's author from approving them (four-eyes). So the
// label is allowed only on a Workflow whose spec is that CronWorkflow's workflowSpec (what the
// controller creates), and the annotation only with the label, naming that CronWorkflow's creator.
func (h *handler) cronRun(ctx context.Context, ns string, o *object) (*refusal, error) {
	name, labelled := o.meta.Labels[custodyv1alpha1.LabelCronWorkflow]
	by, onBehalf := o.meta.Annotations[custodyv1alpha1.AnnotationOnBehalfOf]
	if !labelled {
		if onBehalf {
			return forbidden(checkValidation, "%s: the annotation %s is set on the runs of a CronWorkflow only (with the label %s)",
				o.forDenial, custodyv1alpha1.AnnotationOnBehalfOf, custodyv1alpha1.LabelCronWorkflow), nil
		}
		return nil, nil
	}
	var list custodyv1alpha1.CronWorkflowList
	if err := h.listByName(ctx, ns, name, &list); err != nil {
		return nil, fmt.Errorf("reading CronWorkflow %s: %w", name, err)
	}
	if len(list.Items) == 0 {
		return forbidden(checkValidation, "%s: the label %s names CronWorkflow %q, which does not exist in namespace %s",
			o.forDenial, custodyv1alpha1.LabelCronWorkflow, name, ns), nil
	}
	cw := &list.Items[0]
	if !equality.Semantic.DeepEqual(o.workflow.Spec, cw.Spec.WorkflowSpec) {
		return forbidden(checkValidation, "%s: the label %s marks the runs of CronWorkflow %s (grants may select them by it), and "+
			"its spec is not that CronWorkflow's workflowSpec: only the controller creates its runs",
			o.forDenial, custodyv1alpha1.LabelCronWorkflow, name), nil
	}
	if author := cw.Annotations[custodyv1alpha1.AnnotationCreatedBy]; by != author {
		return forbidden(checkValidation, "%s: a run of CronWorkflow %s must carry the annotation %s naming its author %q, not %q",
			o.forDenial, name, custodyv1alpha1.AnnotationOnBehalfOf, author, by), nil
	}
	return nil, nil
}

// cronSpecAuthorApproves refuses an approval of a CronWorkflow's run by whoever last wrote that
// CronWorkflow's spec (custody.dev/authorized-by), when that is not its creator (whom the run's
// custody.dev/on-behalf-of already keeps out): otherwise a colleague could rewrite what a
// CronWorkflow runs and then approve the run themselves.
func (h *handler) cronSpecAuthorApproves(ctx context.Context, ns string, o *object, user, step string) (*refusal, error) {
	name := o.meta.Labels[custodyv1alpha1.LabelCronWorkflow]
	if name == "" || o.meta.Annotations[custodyv1alpha1.AnnotationOnBehalfOf] == "" {
		return nil, nil
	}
	var list custodyv1alpha1.CronWorkflowList
	if err := h.listByName(ctx, ns, name, &list); err != nil {
		return nil, fmt.Errorf("reading CronWorkflow %s: %w", name, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	if a, ok := custodyv1alpha1.ParseAuthor(list.Items[0].Annotations[custodyv1alpha1.AnnotationAuthorizedBy]); ok && a.User == user {
		return forbidden(checkApproval, "step %q of %s runs what CronWorkflow %s's spec says, last written by %s, who may not "+
			"approve it: an approval must come from someone else (four-eyes)", step, o.forDenial, name, user), nil
	}
	return nil, nil
}

// listByName reads the object of that name into a one-item list, from the API server: the
// controller may list grants and CronWorkflows, not get them one by one.
func (h *handler) listByName(ctx context.Context, ns, name string, list client.ObjectList) error {
	return h.authz.reader.List(ctx, list, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
}

// cronOwner refuses a Workflow that a CronWorkflow would count as one of its runs (a controller
// owner reference to it) unless the controller itself writes it: a run added by anyone else would
// hold off the CronWorkflow's schedules (Forbid) or be pruned with its history. On an update, only
// a change of the owner references is checked.
func (h *handler) cronOwner(req admission.Request, cur, old *object) *refusal {
	ref := metav1.GetControllerOfNoCopy(cur.meta)
	if ref == nil || ref.Kind != "CronWorkflow" || !strings.HasPrefix(ref.APIVersion, custodyv1alpha1.GroupVersion.Group+"/") ||
		req.UserInfo.Username == h.controller {
		return nil
	}
	if old != nil && equality.Semantic.DeepEqual(cur.meta.OwnerReferences, old.meta.OwnerReferences) {
		return nil
	}
	return forbidden(checkValidation, "%s: only the controller creates the runs of CronWorkflow %s (its controller owner "+
		"reference); run its workflowSpec yourself without the reference, or with kubectl custody resubmit", cur.forDenial, ref.Name)
}

// cronRunUpdate refuses changing or removing the annotation custody.dev/on-behalf-of (without it,
// a CronWorkflow's author could approve its runs), and checks a label custody.dev/cronworkflow
// added or changed as cronRun does. Removing the label is allowed: the Workflow then is nobody's run.
func (h *handler) cronRunUpdate(ctx context.Context, ns string, cur, old *object) (*refusal, error) {
	was, wasSet := old.meta.Annotations[custodyv1alpha1.AnnotationOnBehalfOf]
	is, isSet := cur.meta.Annotations[custodyv1alpha1.AnnotationOnBehalfOf]
	if was != is || wasSet != isSet {
		return forbidden(checkValidation, "%s: the annotation %s records whose CronWorkflow created the run, who may not "+
			"approve it, and cannot be changed (it was %q; the request makes it %q)",
			cur.forDenial, custodyv1alpha1.AnnotationOnBehalfOf, was, is), nil
	}
	label, labelled := cur.meta.Labels[custodyv1alpha1.LabelCronWorkflow]
	if !labelled || label == old.meta.Labels[custodyv1alpha1.LabelCronWorkflow] {
		return nil, nil
	}
	return h.cronRun(ctx, ns, cur)
}

// specOf is the spec of a WorkflowTemplate or CronWorkflow, as far as it decides what runs: a
// CronWorkflow's suspend is left out. Pausing and resuming a schedule (on-call, during an
// incident) changes nothing its runs do or hold, so it is not a new spec: it is not checked again,
// and its writer does not become the author whose right to use the grants each run is checked
// against.
func specOf(o *object) any {
	if o.template != nil {
		return o.template.Spec
	}
	spec := o.cron.Spec
	spec.Suspend = false
	return spec
}
