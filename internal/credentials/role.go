package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// +kubebuilder:rbac:groups=core,resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;clusterroles,verbs=list;watch

// Role reads the rules of a kubernetesRole grant's Role (in the grant's namespace) or ClusterRole,
// from api: the manager caches roles' metadata only (RoleMetadata). exists is false when there is none.
func Role(ctx context.Context, api client.Reader, g *custodyv1alpha1.CredentialGrant) (rules []rbacv1.PolicyRule, exists bool, err error) {
	r := g.Spec.Credential.KubernetesRole
	if r.Kind == custodyv1alpha1.RoleKindClusterRole {
		var cr rbacv1.ClusterRole
		err = api.Get(ctx, client.ObjectKey{Name: r.Name}, &cr)
		rules = cr.Rules
	} else {
		var role rbacv1.Role
		err = api.Get(ctx, client.ObjectKey{Namespace: g.Namespace, Name: r.Name}, &role)
		rules = role.Rules
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading %s %s: %w", r.Kind, r.Name, err)
	}
	return rules, true, nil
}

// GrantsOfRole lists, from c (the manager's cache), the kubernetesRole grants that hand out a Role
// (those of its namespace) or a ClusterRole (those of every namespace) named like o: what a change
// of that role, which the manager watches by its metadata only, may change.
func GrantsOfRole(ctx context.Context, c client.Reader, kind custodyv1alpha1.RoleKind, o client.Object) (
	[]*custodyv1alpha1.CredentialGrant, error) {
	var list custodyv1alpha1.CredentialGrantList
	var opts []client.ListOption
	if kind == custodyv1alpha1.RoleKindRole {
		opts = append(opts, client.InNamespace(o.GetNamespace()))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing CredentialGrants of %s %s: %w", kind, o.GetName(), err)
	}
	var grants []*custodyv1alpha1.CredentialGrant
	for i := range list.Items {
		if r := list.Items[i].Spec.Credential.KubernetesRole; r != nil && r.Kind == kind && r.Name == o.GetName() {
			grants = append(grants, &list.Items[i])
		}
	}
	return grants, nil
}

// RoleMetadata is the cache transform of the Roles and ClusterRoles the manager watches (by their
// metadata only, to hear of a change): it keeps their names, UID and resourceVersion and drops the
// rest (labels, annotations such as kubectl's last-applied-configuration, managed fields), so the
// cache of every role of the cluster stays small. Their rules are always read from the API server.
func RoleMetadata(in any) (any, error) {
	if m, ok := in.(*metav1.PartialObjectMetadata); ok {
		m.ObjectMeta = metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID,
			ResourceVersion: m.ResourceVersion, DeletionTimestamp: m.DeletionTimestamp}
	}
	return in, nil
}

// NamespaceMetadata is the cache transform of the namespaces the manager watches (by their
// metadata only, to hear of a change of their custody.dev labels): it keeps their names, UID,
// resourceVersion and custody.dev/ labels, and drops the rest.
func NamespaceMetadata(in any) (any, error) {
	if m, ok := in.(*metav1.PartialObjectMetadata); ok {
		var kept map[string]string
		for k, v := range m.Labels {
			if strings.HasPrefix(k, custodyv1alpha1.GroupVersion.Group+"/") {
				if kept == nil {
					kept = map[string]string{}
				}
				kept[k] = v
			}
		}
		m.ObjectMeta = metav1.ObjectMeta{Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion, Labels: kept,
			DeletionTimestamp: m.DeletionTimestamp}
	}
	return in, nil
}

// NamespacePolicyChanged says whether a namespace update changed a label that decides something
// about its grants and steps (custody.dev/protect-step-pods, custody.dev/broad-roles-need-approval).
func NamespacePolicyChanged(old, cur client.Object) bool {
	for _, k := range []string{custodyv1alpha1.LabelProtectStepPods, custodyv1alpha1.LabelBroadRolesNeedApproval} {
		if old.GetLabels()[k] != cur.GetLabels()[k] {
			return true
		}
	}
	return false
}

// ApprovalNeeded says why a grant whose role reaches beyond the step (reach, from Reach) may not
// issue: it requires no approval, and its namespace asks that such grants do: its label
// custody.dev/broad-roles-need-approval is "true", or, without the label (or with another value
// than "false"), byDefault (the manager's --broad-roles-need-approval). nil when it may. The
// namespace's metadata is read from api, and only for such a grant.
func ApprovalNeeded(ctx context.Context, api client.Reader, g *custodyv1alpha1.CredentialGrant, reach []string,
	byDefault bool) (*Refusal, error) {
	refusal := ApprovalRequired(g, reach)
	if refusal == nil {
		return nil, nil
	}
	labels, err := NamespaceLabels(ctx, api, g.Namespace)
	if err != nil || !BroadRolesNeedApproval(labels, byDefault) {
		return nil, err
	}
	return refusal, nil
}

// NamespaceLabels reads the labels of a namespace (its metadata only) from api.
func NamespaceLabels(ctx context.Context, api client.Reader, namespace string) (map[string]string, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := api.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	return ns.Labels, nil
}

// StepPodsProtected says whether a namespace with these labels protects step pods
// (custody.dev/protect-step-pods=true: admission's step-pod guards, docs/admission.md#step-pods).
func StepPodsProtected(labels map[string]string) bool {
	return labels[custodyv1alpha1.LabelProtectStepPods] == labelOn
}

// UnprotectedMessage says what a grant in a namespace that does not protect step pods exposes.
func UnprotectedMessage(g *custodyv1alpha1.CredentialGrant) string {
	return fmt.Sprintf("Namespace %s does not protect step pods (label %s=true): while a step holds what CredentialGrant %s "+
		"hands out, whoever may exec into or create pods there, or get ServiceAccount tokens (the built-in edit role "+
		"may), can use it as the step", g.Namespace, custodyv1alpha1.LabelProtectStepPods, g.Name)
}

// BroadRolesNeedApproval says whether a namespace with these labels asks that grants whose role
// reaches beyond the step require an approval: its label says so ("true" or "false"), or else
// byDefault does.
func BroadRolesNeedApproval(labels map[string]string, byDefault bool) bool {
	switch labels[custodyv1alpha1.LabelBroadRolesNeedApproval] {
	case labelOn:
		return true
	case "false":
		return false
	}
	return byDefault
}

// ApprovalRequired is the refusal of a grant whose role reaches beyond the step (reach) in a
// namespace that asks such grants to require an approval, when the grant does not; nil when it
// does, or the role reaches nothing.
func ApprovalRequired(g *custodyv1alpha1.CredentialGrant, reach []string) *Refusal {
	if len(reach) == 0 || g.Spec.Approval != nil && g.Spec.Approval.Required {
		return nil
	}
	r := g.Spec.Credential.KubernetesRole
	return &Refusal{custodyv1alpha1.ReasonApprovalRequired, fmt.Sprintf(
		"%s %s of CredentialGrant %s lets a step that holds it %s, and namespace %s asks that such grants require an "+
			"approval (label %s=true): add spec.approval {required: true, approvers: ...}",
		r.Kind, r.Name, g.Name, strings.Join(reach, "; "), g.Namespace, custodyv1alpha1.LabelBroadRolesNeedApproval)}
}

// RoleRefusal says why a kubernetesRole grant cannot be handed out: its Role or ClusterRole does
// not exist (a RoleBinding to it would give the step nothing). nil when it exists.
func RoleRefusal(g *custodyv1alpha1.CredentialGrant, exists bool) *Refusal {
	if exists {
		return nil
	}
	r := g.Spec.Credential.KubernetesRole
	where := " in namespace " + g.Namespace
	if r.Kind == custodyv1alpha1.RoleKindClusterRole {
		where = ""
	}
	return &Refusal{custodyv1alpha1.ReasonSourceNotFound, fmt.Sprintf(
		"%s %s of CredentialGrant %s does not exist%s", r.Kind, r.Name, g.Name, where)}
}

// RulesDigest is a digest of a role's rules that does not depend on their order, nor on the order
// of the verbs, groups, resources, names and URLs within each ("sha256:<hex>"): what a grant's
// approval records of its role (CredentialGrant status.approval.roleRules). A role that does not
// exist has no rules.
func RulesDigest(rules []rbacv1.PolicyRule) string {
	canon := make([]string, 0, len(rules))
	for _, r := range rules {
		r = *r.DeepCopy()
		for _, l := range [][]string{r.Verbs, r.APIGroups, r.Resources, r.ResourceNames, r.NonResourceURLs} {
			slices.Sort(l)
		}
		b, _ := json.Marshal(r) //nolint:errchkjson // a struct of strings
		canon = append(canon, string(b))
	}
	slices.Sort(canon)
	canon = slices.Compact(canon)
	sum := sha256.Sum256([]byte(strings.Join(canon, "\n")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ApprovedDigest is the digest of the role's rules that a role grant's approval covers: as
// admission stamped it into the approval, else as the controller recorded it ("" when neither did).
func ApprovedDigest(g *custodyv1alpha1.CredentialGrant) string {
	if rec, _ := custodyv1alpha1.ParseGrantApproval(g.Annotations[custodyv1alpha1.AnnotationApproveGrant]); rec != nil && rec.RoleRules != "" {
		return rec.RoleRules
	}
	if a := g.Status.Approval; a != nil {
		return a.RoleRules
	}
	return ""
}

// MaxApprovedRules is how many rules of a role a grant's status records as approved
// (status.approval.approvedRules); a larger role's approval is compared by digest only.
const MaxApprovedRules = 256

// approvedRules are the rules a role grant's approval covers, as the controller recorded them for
// this approval (nil when it did not: the digest decides then).
func approvedRules(g *custodyv1alpha1.CredentialGrant) []rbacv1.PolicyRule {
	a := g.Status.Approval
	if a == nil || a.ApprovedRules == nil || a.RoleRules == "" || a.RoleRules != ApprovedDigest(g) {
		return nil
	}
	return a.ApprovedRules
}

// RoleChanged says whether the rules of a role grant's role (rules, as they are now) allow more
// than its approval covers, and what more (added: one rule per verb and resource, or nil when only
// the digest of the approved rules is known and any change counts). A change that allows nothing
// more, a rule removed or narrowed, is not one. An approval that records nothing (recorded before
// Custody recorded rules) is taken to cover the role as the grant controller first reads it.
func RoleChanged(g *custodyv1alpha1.CredentialGrant, rules []rbacv1.PolicyRule) (changed bool, added []rbacv1.PolicyRule) {
	digest := ApprovedDigest(g)
	if g.Spec.Credential.KubernetesRole == nil || digest == "" {
		return false, nil
	}
	if approved := approvedRules(g); approved != nil {
		covered, uncovered := rbacvalidation.Covers(approved, rules)
		return !covered, CompactRules(uncovered)
	}
	return digest != RulesDigest(rules), nil
}

// BeyondApproval says whether a rule of a role grant's role (as it is now) allows anything the
// grant's approval does not cover; known is false when that cannot be told (no approval, or its
// rules are not recorded: only their digest).
func BeyondApproval(g *custodyv1alpha1.CredentialGrant, rule rbacv1.PolicyRule) (beyond, known bool) {
	approved := approvedRules(g)
	if g.Spec.Credential.KubernetesRole == nil || approved == nil {
		return false, false
	}
	covered, _ := rbacvalidation.Covers(approved, []rbacv1.PolicyRule{rule})
	return !covered, true
}

// CompactRules joins rules that differ in one list only (their resource names, verbs, or
// resources), as rbacvalidation.Covers returns them one verb, resource and name each, into as few
// as it can: for a person to read.
func CompactRules(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	// First the names of each verb and resource, then the verbs of each resource, then the
	// resources with the same verbs.
	byVerb := joinRules(rules, func(r *rbacv1.PolicyRule) *[]string { return &r.ResourceNames })
	byResource := joinRules(byVerb, func(r *rbacv1.PolicyRule) *[]string { return &r.Verbs })
	return joinRules(byResource, func(r *rbacv1.PolicyRule) *[]string {
		if len(r.NonResourceURLs) > 0 {
			return &r.NonResourceURLs
		}
		return &r.Resources
	})
}

// joinRules joins the rules equal but for the list field returns, in their first order. An empty
// list (no resource names: all of them) joins none.
func joinRules(rules []rbacv1.PolicyRule, field func(*rbacv1.PolicyRule) *[]string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	index := map[string]int{}
	for _, r := range rules {
		r = *r.DeepCopy()
		list := field(&r)
		joined := *list
		*list = nil
		key := fmt.Sprint(r, len(joined) == 0)
		i, seen := index[key]
		if !seen {
			index[key] = len(out)
			*list = slices.Clone(joined)
			out = append(out, r)
			continue
		}
		l := field(&out[i])
		for _, v := range joined {
			if !slices.Contains(*l, v) {
				*l = append(*l, v)
			}
		}
	}
	return out
}

// RuleString writes an RBAC rule as a person reads it: "get, list apps/deployments named web".
func RuleString(rule rbacv1.PolicyRule) string {
	var what []string
	for _, res := range rule.Resources {
		for _, group := range rule.APIGroups {
			if group != "" {
				what = append(what, group+"/"+res)
			} else {
				what = append(what, res)
			}
		}
	}
	what = append(what, rule.NonResourceURLs...)
	line := strings.Join(rule.Verbs, ", ") + " " + strings.Join(what, ", ")
	if len(rule.ResourceNames) > 0 {
		line += " named " + strings.Join(rule.ResourceNames, ", ")
	}
	return line
}

// RoleChangedSinceApproval says whether the grant controller found a role grant's role allowing
// more than the approval the grant carries now covers (condition Approved, reason RoleChanged,
// computed for that approval and not an earlier one): what steps hold under it goes.
func RoleChangedSinceApproval(g *custodyv1alpha1.CredentialGrant) bool {
	c, a := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionApproved), g.Status.Approval
	if c == nil || c.Reason != custodyv1alpha1.ReasonRoleChanged || a == nil {
		return false
	}
	rec, _ := custodyv1alpha1.ParseGrantApproval(g.Annotations[custodyv1alpha1.AnnotationApproveGrant])
	return rec != nil && rec.ApprovedBy == a.ApprovedBy && (rec.ApprovedAt.IsZero() || rec.ApprovedAt.Equal(&a.ApprovedAt)) &&
		(rec.RoleRules == "" || rec.RoleRules == a.RoleRules)
}

// ApprovalRequiredNow says whether the grant controller found a role grant's role reaching beyond
// the step in a namespace that asks such grants to require an approval, which the grant does not
// (condition Stalled, reason ApprovalRequired, computed for the grant's current spec): what steps
// hold under it goes, as an unapproved grant's would.
func ApprovalRequiredNow(g *custodyv1alpha1.CredentialGrant) bool {
	c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionStalled)
	return c != nil && c.Reason == custodyv1alpha1.ReasonApprovalRequired && c.ObservedGeneration == g.Generation
}

// RoleChangedMessage says that the role of a grant allows more since its approval (added, from
// RoleChanged: what more, when known).
func RoleChangedMessage(g *custodyv1alpha1.CredentialGrant, added []rbacv1.PolicyRule) string {
	r, since := g.Spec.Credential.KubernetesRole, "it was approved"
	if a := g.Status.Approval; a != nil {
		since = fmt.Sprintf("%s approved the grant at %s", a.ApprovedBy, a.ApprovedAt.UTC().Format(time.RFC3339))
	}
	what := "the approval covered the rules it had then"
	if len(added) > 0 {
		const most = 5
		lines := make([]string, 0, most+1)
		for i, rule := range added {
			if i == most {
				lines = append(lines, fmt.Sprintf("and %d more", len(added)-most))
				break
			}
			lines = append(lines, RuleString(rule))
		}
		what = "it now also allows " + strings.Join(lines, "; ") + ", which the approval did not cover"
	}
	return fmt.Sprintf("%s %s of CredentialGrant %s changed since %s: %s. "+
		"Nothing is issued, and what steps hold is revoked, until an approver approves it again: "+
		"kubectl custody get grant/%s shows what the role reaches now; kubectl custody approve grant %s",
		r.Kind, r.Name, g.Name, since, what, g.Name, g.Name)
}

// reach is a way a role lets its holder act beyond its own work: any of the verbs on any of the
// resources reaches it.
type reach struct {
	verbs     []string
	resources []groupResource
	what      string
}

// groupResource is an API group and a resource ("name" or "name/subresource").
type groupResource struct{ group, resource string }

func core(resources ...string) []groupResource { return in("", resources...) }

func in(group string, resources ...string) []groupResource {
	out := make([]groupResource, 0, len(resources))
	for _, r := range resources {
		out = append(out, groupResource{group, r})
	}
	return out
}

const create = "create"

var writes = []string{create, "update", "patch"}

const runInPods = "run commands in, or connect to, other pods of the namespace, with what they hold"

// reaches are what a step holding a role bound in its namespace could do with other identities'
// and credentials' access, or to make access outlive it. Cluster-scoped resources are left out: a
// RoleBinding never grants them.
var reaches = []reach{
	{[]string{"get", "list", "watch"}, core("secrets"),
		"read every Secret of the namespace (the sources of other grants among them)"},
	{append(slices.Clone(writes), "delete", "deletecollection"), core("secrets"),
		"change Secrets of the namespace (a grant's source among them, whose new value reaches every step holding a copy)"},
	{writes, slices.Concat(core("pods", "replicationcontrollers"), in("apps", "deployments", "replicasets", "statefulsets",
		"daemonsets"), in("batch", "jobs", "cronjobs")),
		"run pods, which may run as any ServiceAccount of the namespace and mount any of its Secrets"},
	{[]string{create, "get"}, core("pods/exec", "pods/attach", "pods/portforward"), runInPods},
	{[]string{"update", "patch"}, core("pods/ephemeralcontainers"), runInPods},
	{[]string{create}, core("serviceaccounts/token"),
		"get tokens of any ServiceAccount of the namespace"},
	{append(slices.Clone(writes), "bind", "escalate"), in(rbacv1.GroupName, "roles", "rolebindings"),
		"grant access to others through RBAC, which outlives the step"},
	{[]string{"impersonate"}, core("users", "groups", "serviceaccounts"),
		"act as other users and ServiceAccounts"},
	{writes, in(custodyv1alpha1.GroupVersion.Group, "credentialgrants"),
		"change CredentialGrants, which say who may hold credentials"},
}

// Reach says what a role's rules let a step that holds them do beyond its own work: reach
// credentials and identities other than the ones granted to it, or make access that outlives it.
// Each is a phrase, in a fixed order; none for a role that does none of these. Rules limited to
// resourceNames are named objects the role's author chose, and are not counted.
func Reach(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range reaches {
		if !slices.Contains(out, r.what) && reachedBy(rules, r) {
			out = append(out, r.what)
		}
	}
	return out
}

// ReachMessage says what Reach found for the role of a role grant, for a condition, an Event or an
// admission warning.
func ReachMessage(g *custodyv1alpha1.CredentialGrant, reach []string) string {
	role := g.Spec.Credential.KubernetesRole
	if len(reach) == 0 {
		return fmt.Sprintf("%s %s lets a step that holds it do none of these: read or change Secrets, run pods or commands in "+
			"them, get tokens, grant access through RBAC, act as others, change CredentialGrants", role.Kind, role.Name)
	}
	return fmt.Sprintf("%s %s lets a step that holds it %s: it reaches credentials and identities other than the ones "+
		"granted, or makes access that outlives the step. Grant a role with only what the steps do",
		role.Kind, role.Name, strings.Join(reach, "; "))
}

func reachedBy(rules []rbacv1.PolicyRule, r reach) bool {
	for _, rule := range rules {
		if len(rule.ResourceNames) > 0 {
			continue
		}
		for _, gr := range r.resources {
			if allows(rule, gr.group, gr.resource, r.verbs) {
				return true
			}
		}
	}
	return false
}

// RuleAllows is RBAC's own matching of one rule (wildcards included) against a request: verb on a
// resource of group, on the object named name (a rule limited to resourceNames must list it).
func RuleAllows(rule rbacv1.PolicyRule, group, resource, verb, name string) bool {
	if len(rule.ResourceNames) > 0 && !slices.Contains(rule.ResourceNames, name) {
		return false
	}
	return allows(rule, group, resource, []string{verb})
}

// allows is RBAC's own matching of one rule (wildcards included) against a group, a resource
// ("name" or "name/subresource") and any of the verbs.
func allows(rule rbacv1.PolicyRule, group, resource string, verbs []string) bool {
	if !has(rule.APIGroups, group) {
		return false
	}
	main, sub, isSub := strings.Cut(resource, "/")
	resourceOK := false
	for _, r := range rule.Resources {
		if r == rbacv1.ResourceAll || r == resource || isSub && (r == main+"/*" || r == "*/"+sub) {
			resourceOK = true
			break
		}
	}
	if !resourceOK {
		return false
	}
	for _, v := range verbs {
		if has(rule.Verbs, v) {
			return true
		}
	}
	return false
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v || x == "*" {
			return true
		}
	}
	return false
}
