package webhook

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/jobspec"
)

// The step-pod guard: in a namespace that opts in (LabelProtectStepPods), nobody may exec into,
// attach to, port-forward or proxy to, or add an ephemeral container to the pod of a step, which holds the
// step's SPIFFE identity and credentials (OWASP NHI10: a person using a non-human identity). The
// webhook's namespaceSelector (added to the generated configuration by `make manifests`) limits
// it to those namespaces: it fails closed there, and is never called elsewhere, so an outage of
// Custody blocks exec only where a namespace asked for this.
// +kubebuilder:webhook:path=/validate-step-pod-access,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods/exec;pods/attach;pods/portforward;pods/proxy;pods/ephemeralcontainers,verbs=connect;update,versions=v1,name=steppods.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// The same namespaces keep anyone but the Job controller from creating a pod that claims to be a
// step's (its labels) or runs as an attempt's ServiceAccount: such a pod could race the real one
// for the attempt's SPIFFE entry, or act with what the attempt's ServiceAccount is bound to; nor a
// pod that uses a Secret that grants hand out to steps, or a step attempt's copy of one. It reads
// the ServiceAccount a new pod runs as, and the metadata of the Secrets it uses, as stored (not
// from the cache, which may not have an attempt's new ServiceAccount yet and holds only grantable
// Secrets).
// +kubebuilder:rbac:groups=core,resources=serviceaccounts;secrets,verbs=get
// +kubebuilder:webhook:path=/validate-step-pod-creation,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=steppodcreation.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// And only Custody's controller may create a Job whose pods would be step pods: the Job
// controller, which may create step pods, would otherwise create them for anyone's Job.
// +kubebuilder:webhook:path=/validate-step-job-creation,mutating=false,failurePolicy=fail,sideEffects=None,groups=batch,resources=jobs,verbs=create,versions=v1,name=stepjobcreation.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// Nor may anyone but the kubelet, for a pod, request a token of an attempt's ServiceAccount, which
// would act with what the attempt's grants bind it to, with no pod at all. `make manifests` adds a
// matchCondition that keeps the kubelets' requests (every pod's token, in that namespace) from
// ever reaching this webhook, so that an outage of Custody does not hold up other pods' tokens.
// +kubebuilder:webhook:path=/validate-step-token,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=serviceaccounts/token,verbs=create,versions=v1,name=steptokens.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// Nor a Secret of type kubernetes.io/service-account-token for an attempt's ServiceAccount, which
// kube-controller-manager's token controller fills with a token that never expires. `make
// manifests` adds a matchCondition so that only such Secrets are sent to this webhook.
// +kubebuilder:webhook:path=/validate-step-token-secret,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=secrets,verbs=create;update,versions=v1,name=steptokensecrets.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

// Nor may anyone but Custody's controller make a Secret or RoleBinding named as an attempt's copy
// or binding is (<attempt>-g<6 hex digits>): Custody takes one that exists for its own (as it must
// after a crash), and attempts' names can be foretold. `make manifests` adds a matchCondition on
// the name, so that no other Secret or RoleBinding is sent to this webhook.
// +kubebuilder:webhook:path=/validate-step-names,mutating=false,failurePolicy=fail,sideEffects=None,groups="";rbac.authorization.k8s.io,resources=secrets;rolebindings,verbs=create,versions=v1,name=stepnames.custody.dev,admissionReviewVersions=v1,timeoutSeconds=10

const (
	// PathStepJobCreation is the path of the guard of step Jobs' creation.
	PathStepJobCreation = "/validate-step-job-creation"
	// PathStepPods is the step-pod guard's path.
	PathStepPods = "/validate-step-pod-access"
	// PathStepPodCreation is the path of the guard of step pods' creation.
	PathStepPodCreation = "/validate-step-pod-creation"
	// PathStepTokens is the path of the guard of tokens of attempts' ServiceAccounts.
	PathStepTokens = "/validate-step-token"
	// PathStepNames is the path of the guard of the names of attempts' Secret copies and RoleBindings.
	PathStepNames = "/validate-step-names"
	// PathStepTokenSecrets is the path of the guard of token Secrets of attempts' ServiceAccounts.
	PathStepTokenSecrets = "/validate-step-token-secret"
	// LabelProtectStepPods turns the step-pod guard on in a namespace that has it set to "true".
	LabelProtectStepPods = custodyv1alpha1.LabelProtectStepPods
	checkStepPod         = "steppod"
	checkStepPodCreation = "steppodcreation"
	checkStepJobCreation = "stepjobcreation"
	checkStepToken       = "steptoken"
	checkStepTokenSecret = "steptokensecret"
	checkStepName        = "stepname"
	resourceSecrets      = "secrets"
	resourceRoleBindings = "rolebindings"
	// nodes is the group of kubelets' users.
	nodes = "system:nodes"
)

// stepPodGuard refuses access into a step's pod.
type stepPodGuard struct {
	// pods reads the pod as stored (not the manager's cache, which holds only pods labelled as
	// Custody's: a pod whose labels were changed would look like nobody's).
	pods client.Reader
	// workflows reads Workflows (the manager's cache).
	workflows client.Reader
}

// access names what a request to a pod subresource would do.
var access = map[string]string{
	"exec":                "exec into",
	"attach":              "attach to",
	"portforward":         "port-forward to",
	"proxy":               "proxy requests to",
	"ephemeralcontainers": "add an ephemeral container to",
}

func (g *stepPodGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	what, ok := access[req.SubResource]
	if !ok || req.Resource.Resource != "pods" {
		return admission.Allowed("")
	}
	var pods corev1.PodList
	if err := g.pods.List(ctx, &pods, client.InNamespace(req.Namespace),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", req.Name)}); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading pod %s/%s: %w", req.Namespace, req.Name, err))
	}
	if len(pods.Items) == 0 {
		return admission.Allowed("") // the API server says it does not exist
	}
	pod := &pods.Items[0]
	step, err := g.stepOf(ctx, pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if step == "" {
		return admission.Allowed("")
	}
	return refuse(ctx, req, "Pod", req.Name, checkStepPod, fmt.Sprintf(
		"pod %s runs %s and holds its SPIFFE identity and credentials; namespace %s "+
			"protects step pods (label %s=true), so nobody may %s it: read what the step does with kubectl custody logs, "+
			"or have it write what you need to see to its results", pod.Name, step, req.Namespace, LabelProtectStepPods, what))
}

// stepOf says which step attempt a pod runs ("step deploy (attempt 2) of workflow release"), or
// "" when it is not a step's pod. Its labels say so, unless someone changed them; its
// ServiceAccount, which cannot be changed on a pod, is an attempt's when a Workflow's status
// (written only by the controller) names it.
func (g *stepPodGuard) stepOf(ctx context.Context, pod *corev1.Pod) (string, error) {
	if wf := pod.Labels[custodyv1alpha1.LabelWorkflow]; wf != "" {
		return fmt.Sprintf("step %s (attempt %s) of workflow %s", pod.Labels[custodyv1alpha1.LabelStep],
			pod.Labels[custodyv1alpha1.LabelAttempt], wf), nil
	}
	if pod.Spec.ServiceAccountName == "" {
		return "", nil
	}
	var list custodyv1alpha1.WorkflowList
	if err := g.workflows.List(ctx, &list, client.InNamespace(pod.Namespace)); err != nil {
		return "", fmt.Errorf("listing the Workflows of namespace %s to tell whether pod %s runs a step: %w", pod.Namespace, pod.Name, err)
	}
	for _, wf := range list.Items {
		for _, st := range wf.Status.Steps {
			if st.ServiceAccountName == pod.Spec.ServiceAccountName {
				return fmt.Sprintf("step %s (attempt %d) of workflow %s", st.Name, st.Attempt, wf.Name), nil
			}
		}
	}
	return foretold(list.Items, pod.Spec.ServiceAccountName), nil
}

// foretold says whose attempt to come a ServiceAccount's name is ("step deploy (attempt 3, to
// come) of workflow release"), or "". Attempts' names are derived from the run's UID, the step and
// the attempt's number (jobspec.Name), so they can be foretold once the run exists; a
// ServiceAccount made under one before Custody makes it, which Custody would take for its own,
// must be an attempt's already, so that no token or pod is made for it meanwhile.
func foretold(runs []custodyv1alpha1.Workflow, name string) string {
	rest, _, ok := cutLast(name, "-")
	if !ok {
		return ""
	}
	_, number, ok := cutLast(rest, "-")
	n, err := strconv.ParseInt(number, 10, 32)
	if !ok || err != nil || n < 1 {
		return ""
	}
	for i := range runs {
		wf := &runs[i]
		steps := make([]string, 0, len(wf.Spec.Steps)+len(wf.Spec.Finally)+len(wf.Status.Steps))
		for _, s := range slices.Concat(wf.Spec.Steps, wf.Spec.Finally) {
			steps = append(steps, s.Name)
		}
		for _, st := range wf.Status.Steps {
			steps = append(steps, st.Name)
		}
		for _, step := range steps {
			if jobspec.Name(wf.Name, string(wf.UID), step, int32(n)) == name {
				return fmt.Sprintf("step %s (attempt %d, to come) of workflow %s", step, n, wf.Name)
			}
		}
	}
	return ""
}

// cutLast cuts s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// jobControllers are the users the Job controller creates pods as: kube-controller-manager's own
// (--use-service-account-credentials=false) or the job-controller ServiceAccount's (true, the
// kubeadm default). kube-controller-manager's own user is also its ReplicaSet, StatefulSet and
// DaemonSet controllers'; the Job controller is told from them by the owner reference it sets on
// the pods it creates (byJobController).
var jobControllers = []string{"system:kube-controller-manager", "system:serviceaccount:kube-system:job-controller"}

// byJobController says whether a pod is being created by the Job controller: the request comes
// from one of jobControllers and the pod's controller is a Job. Only those users' pods are taken at
// their word: anyone else can write any owner reference.
func byJobController(req admission.Request, pod *corev1.Pod) bool {
	owner := metav1.GetControllerOf(pod)
	return slices.Contains(jobControllers, req.UserInfo.Username) && owner != nil && owner.Kind == "Job" &&
		strings.HasPrefix(owner.APIVersion, batchv1.GroupName+"/")
}

// stepPodCreation refuses the creation of a step's pod by anyone but the Job controller.
type stepPodCreation struct {
	// stored reads ServiceAccounts and Secrets' metadata as stored; workflows reads Workflows (the cache).
	stored, workflows client.Reader
	decoder           admission.Decoder
}

func (c *stepPodCreation) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Resource != "pods" || req.SubResource != "" {
		return admission.Allowed("")
	}
	pod := &corev1.Pod{}
	if err := c.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if byJobController(req, pod) {
		return admission.Allowed("")
	}
	pod.Namespace = req.Namespace
	return c.decide(ctx, req, "Pod", pod.Name, pod, checkStepPodCreation, func(claim string) string {
		return fmt.Sprintf("%s: only its Job's controller may create a step's pod, which receives the step's SPIFFE identity "+
			"and credentials", claim)
	})
}

// decide refuses a new pod, or a Job's pods, that claims to be a step's (stepClaim; forJob for a
// Job's), with why (what says it) and what to do instead; it counts and logs the refusal.
func (c *stepPodCreation) decide(ctx context.Context, req admission.Request, kind, name string, pod *corev1.Pod, check string,
	why func(claim string) string) admission.Response {
	claim, err := c.stepClaim(ctx, pod, kind == "Job")
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if claim == "" {
		return admission.Allowed("")
	}
	return refuse(ctx, req, kind, name, check, fmt.Sprintf(
		"%s; namespace %s protects step pods (label %s=true). Run a step as a Workflow, and "+
			"anything else as another ServiceAccount, without Custody's labels or granted Secrets", why(claim), req.Namespace, LabelProtectStepPods))
}

// stepClaim says how a new pod claims to be a step's or to hold what a step holds: by its labels
// or its ServiceAccount (identityClaim), or by the Secrets it uses (secretClaim). "" when it does
// not.
func (c *stepPodCreation) stepClaim(ctx context.Context, pod *corev1.Pod, forJob bool) (string, error) {
	claim, err := c.identityClaim(ctx, pod, forJob)
	if claim != "" || err != nil {
		return claim, err
	}
	return c.secretClaim(ctx, pod)
}

// identityClaim says how a new pod claims to be a step's: by its labels, or by running as an
// attempt's ServiceAccount (the ServiceAccount's labels say so, or, if someone removed them, a
// Workflow's status names it). A Job's pods (forJob) claim it too when their ServiceAccount does
// not exist yet: attempts' names can be foretold, and the Job controller would create the pods as
// soon as the attempt's ServiceAccount exists. (A pod whose ServiceAccount does not exist is
// refused by the API server before this is asked.)
func (c *stepPodCreation) identityClaim(ctx context.Context, pod *corev1.Pod, forJob bool) (string, error) {
	if wf := pod.Labels[custodyv1alpha1.LabelWorkflow]; wf != "" {
		return fmt.Sprintf("the pod is labelled as a pod of workflow %s (%s)", wf, custodyv1alpha1.LabelWorkflow), nil
	}
	name := pod.Spec.ServiceAccountName
	if name == "" {
		return "", nil
	}
	attempt, exists, err := c.attemptOf(ctx, pod.Namespace, name)
	switch {
	case err != nil || attempt != "":
		return fmt.Sprintf("the pod runs as ServiceAccount %s of %s", name, attempt), err
	case !exists && forJob:
		return fmt.Sprintf("the pod runs as ServiceAccount %s, which does not exist yet and could be a step attempt's to come: "+
			"create the ServiceAccount first", name), nil
	}
	return "", nil
}

// attemptOf says whose a ServiceAccount is ("an attempt of workflow release", "step pay (attempt
// 2) of workflow invoice"), or "" when it is no step attempt's: its labels say so, or, if someone
// removed them, a Workflow's status names it, or it is named as an attempt to come of a run
// (foretold). exists says whether it exists.
func (c *stepPodCreation) attemptOf(ctx context.Context, namespace, name string) (attempt string, exists bool, err error) {
	sa := &corev1.ServiceAccount{}
	err = c.stored.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sa)
	switch {
	case apierrors.IsNotFound(err):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("reading ServiceAccount %s/%s: %w", namespace, name, err)
	case sa.Labels[custodyv1alpha1.LabelWorkflow] != "":
		return "an attempt of workflow " + sa.Labels[custodyv1alpha1.LabelWorkflow], true, nil
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace}, Spec: corev1.PodSpec{ServiceAccountName: name}}
	attempt, err = (&stepPodGuard{workflows: c.workflows}).stepOf(ctx, pod)
	return attempt, true, err
}

// copyName is the form of the name of an attempt's copy of a granted Secret
// (credentials.ResourceName: the attempt's name, "-g" and six hex digits of the grant's name).
var copyName = regexp.MustCompile(`-g[0-9a-f]{6}$`)

// secretClaim says how a new pod would hold a credential that Custody hands out only to steps: it
// uses (in a volume, a projected volume, env or envFrom) a Secret that CredentialGrants hand out
// (custody.dev/grantable=true), an attempt's copy of one (custody.dev/copy-of), or a Secret that
// does not exist yet and is named like a copy: attempts' names can be foretold, and the kubelet
// would mount the copy once Custody made it. Only the Secrets' metadata is read, as stored (the
// manager's cache holds only grantable Secrets).
func (c *stepPodCreation) secretClaim(ctx context.Context, pod *corev1.Pod) (string, error) {
	for _, name := range secretsUsed(&pod.Spec) {
		secret := &metav1.PartialObjectMetadata{}
		secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := c.stored.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, secret)
		switch {
		case apierrors.IsNotFound(err) && copyName.MatchString(name):
			return fmt.Sprintf("the pod uses Secret %s, which does not exist yet and is named like a step attempt's copy of a "+
				"granted Secret: create the Secret first, or name it otherwise", name), nil
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return "", fmt.Errorf("reading the metadata of Secret %s/%s: %w", pod.Namespace, name, err)
		case secret.Labels[credentials.LabelCopyOf] != "":
			return fmt.Sprintf("the pod uses Secret %s, a step attempt's copy of granted Secret %s (workflow %s)", name,
				secret.Labels[credentials.LabelCopyOf], secret.Labels[custodyv1alpha1.LabelWorkflow]), nil
		case secret.Labels[custodyv1alpha1.LabelGrantable] == "true":
			return fmt.Sprintf("the pod uses Secret %s, which CredentialGrants hand out to steps (%s=true)", name,
				custodyv1alpha1.LabelGrantable), nil
		}
	}
	return "", nil
}

// secretsUsed are the names of the Secrets whose values a pod's containers would get: secret and
// projected volumes, env and envFrom of every container, in order, each once. (Image pull Secrets
// go to the kubelet's registry client, and a CSI driver's to the driver, not to a container.)
func secretsUsed(spec *corev1.PodSpec) []string {
	var names []string
	add := func(name string) {
		if name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			add(v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add(src.Secret.Name)
				}
			}
		}
	}
	containers := slices.Concat(spec.InitContainers, spec.Containers)
	for i := range spec.EphemeralContainers {
		containers = append(containers, corev1.Container(spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	for _, ctr := range containers {
		for _, from := range ctr.EnvFrom {
			if from.SecretRef != nil {
				add(from.SecretRef.Name)
			}
		}
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				add(e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	return names
}

// stepTokenGuard refuses a token of an attempt's ServiceAccount to everyone but a kubelet
// requesting it for a pod (bound to the pod; the Node authorizer lets a kubelet do that only for
// the pods of its node, and only the Job controller creates a pod that runs as an attempt's
// ServiceAccount there).
type stepTokenGuard struct {
	pods *stepPodCreation
}

func (g *stepTokenGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Resource != "serviceaccounts" || req.SubResource != "token" {
		return admission.Allowed("")
	}
	tr := &authenticationv1.TokenRequest{}
	if err := g.pods.decoder.Decode(req, tr); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if ref := tr.Spec.BoundObjectRef; slices.Contains(req.UserInfo.Groups, nodes) && ref != nil && ref.Kind == "Pod" {
		return admission.Allowed("")
	}
	return g.pods.refuseTokenOf(ctx, req, "ServiceAccount", checkStepToken, req.Name, func(attempt string) string {
		return fmt.Sprintf("ServiceAccount %s is %s: a token of it would act with what the step is granted, without its pod. "+
			"Only the kubelet may request one, for the step's pod", req.Name, attempt)
	})
}

// refuseTokenOf refuses a request that would give a token of ServiceAccount sa when sa is a step
// attempt's (attemptOf), with why (what the request would do, given whose sa is); it counts and
// logs the refusal.
func (c *stepPodCreation) refuseTokenOf(ctx context.Context, req admission.Request, kind, check, sa string,
	why func(attempt string) string) admission.Response {
	attempt, _, err := c.attemptOf(ctx, req.Namespace, sa)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if attempt == "" {
		return admission.Allowed("")
	}
	return refuse(ctx, req, kind, req.Name, check, fmt.Sprintf("%s; namespace %s protects step pods (label %s=true)", why(attempt),
		req.Namespace, LabelProtectStepPods))
}

// refuse denies a request to one of the step-pod guards with message, counting the refusal by kind
// and check and logging who was refused (name is the object's, which a request for a generated
// name does not carry).
func refuse(ctx context.Context, req admission.Request, kind, name, check, message string) admission.Response {
	Refusals.WithLabelValues(kind, check).Inc()
	logf.FromContext(ctx).Info("admission refused", "kind", kind, "namespace", req.Namespace, "name", name,
		"user", req.UserInfo.Username, "operation", req.Operation, "subresource", req.SubResource, "check", check)
	return admission.Denied(message)
}

// stepTokenSecretGuard refuses a Secret of type kubernetes.io/service-account-token for an attempt's
// ServiceAccount (annotation kubernetes.io/service-account.name), to everyone: Custody never makes
// one, and the token it would hold does not expire.
type stepTokenSecretGuard struct {
	pods *stepPodCreation
}

func (g *stepTokenSecretGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Resource != resourceSecrets || req.SubResource != "" {
		return admission.Allowed("")
	}
	secret := &corev1.Secret{}
	if err := g.pods.decoder.Decode(req, secret); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	name := secret.Annotations[corev1.ServiceAccountNameKey]
	if secret.Type != corev1.SecretTypeServiceAccountToken || name == "" {
		return admission.Allowed("")
	}
	return g.pods.refuseTokenOf(ctx, req, "Secret", checkStepTokenSecret, name, func(attempt string) string {
		return fmt.Sprintf("Secret %s would hold a token of ServiceAccount %s, which is %s: a token that never expires, acting "+
			"with what the step is granted, without its pod", req.Name, name, attempt)
	})
}

// stepNameGuard refuses a Secret or RoleBinding named as an attempt's copy or binding is
// (copyName) to everyone but Custody's controller.
type stepNameGuard struct {
	// controller is the user Custody's controller makes its requests as.
	controller string
}

func (g *stepNameGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.UserInfo.Username == g.controller || !copyName.MatchString(req.Name) ||
		req.Resource.Resource != resourceSecrets && req.Resource.Resource != resourceRoleBindings {
		return admission.Allowed("")
	}
	kind := map[string]string{resourceSecrets: "Secret", resourceRoleBindings: "RoleBinding"}[req.Resource.Resource]
	return refuse(ctx, req, kind, req.Name, checkStepName, fmt.Sprintf(
		"%s %s is named like a step attempt's copy of a granted Secret or binding of a granted "+
			"role (<attempt>-g<6 hex digits>), which Custody would take for its own; only Custody's controller makes those in "+
			"namespace %s, which protects step pods (label %s=true): name it otherwise", kind, req.Name, req.Namespace, LabelProtectStepPods))
}

// stepJobCreation refuses the creation of a Job whose pods would be step pods by anyone but
// Custody's controller.
type stepJobCreation struct {
	pods *stepPodCreation
	// controller is the user Custody's controller makes its requests as.
	controller string
}

func (c *stepJobCreation) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Resource != "jobs" || req.SubResource != "" || req.UserInfo.Username == c.controller {
		return admission.Allowed("")
	}
	job := &batchv1.Job{}
	if err := c.pods.decoder.Decode(req, job); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	tmpl := job.Spec.Template
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Labels: tmpl.Labels}, Spec: tmpl.Spec}
	return c.pods.decide(ctx, req, "Job", job.Name, pod, checkStepJobCreation, func(claim string) string {
		return fmt.Sprintf("Job %s would create step pods (%s): only Custody's controller may create a step's Job, whose pod "+
			"receives the step's SPIFFE identity and credentials", job.Name, strings.TrimPrefix(claim, "the pod "))
	})
}
