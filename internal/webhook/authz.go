package webhook

import (
	"context"
	"fmt"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// Custody's own permissions, checked with SubjectAccessReviews like RBAC's bind and escalate.
const (
	// VerbUse on credentialgrants/<name> lets a user create Workflows whose steps request that
	// grant's credential.
	VerbUse = "use"
	// VerbIssue on credentialgrants/spiffe lets a user create grants that add DNS names or
	// federated trust domains to SVIDs.
	VerbIssue = "issue"
	// SubresourceSPIFFE is the subresource VerbIssue is checked on.
	SubresourceSPIFFE = "spiffe"
)

// maxRuleChecks bounds the SubjectAccessReviews one role check makes; a bigger role needs bind.
const maxRuleChecks = 128

// authorizer asks the API server what the requesting user may do (SubjectAccessReview as that
// user, with their groups and extra attributes).
type authorizer struct {
	client client.Client
	reader client.Reader // uncached: roles are read only at admission
}

func (a *authorizer) allowed(ctx context.Context, user authenticationv1.UserInfo, attrs authorizationv1.ResourceAttributes) (bool, error) {
	return allowed(ctx, a.client, user, attrs)
}

// GrantsNotUsable returns the grants, of those the steps request, that user may not `use` in ns
// (SubjectAccessReviews created with c, which must not be a cached client). Admission asks it of
// a Workflow's, template's or CronWorkflow's author; the CronWorkflow controller asks it again
// before each run.
func GrantsNotUsable(ctx context.Context, c client.Client, user authenticationv1.UserInfo, ns string,
	steps []custodyv1alpha1.Step) ([]string, error) {
	var lacking []string
	for _, n := range custodyv1alpha1.RequestedGrants(steps) {
		ok, err := allowed(ctx, c, user, authorizationv1.ResourceAttributes{Namespace: ns,
			Verb: VerbUse, Group: custodyv1alpha1.GroupVersion.Group, Resource: "credentialgrants", Name: n})
		if err != nil {
			return nil, err
		}
		if !ok {
			lacking = append(lacking, n)
		}
	}
	return lacking, nil
}

// allowed asks the API server whether user may do what attrs say.
func allowed(ctx context.Context, c client.Client, user authenticationv1.UserInfo, attrs authorizationv1.ResourceAttributes) (bool, error) {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &attrs, User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
	}}
	if err := c.Create(ctx, sar); err != nil {
		return false, fmt.Errorf("SubjectAccessReview: %w", err)
	}
	return sar.Status.Allowed && !sar.Status.Denied, nil
}

// checkGrant returns what the user would hand out with the grant without holding it, one
// sentence per missing permission; an empty result means nothing.
func (a *authorizer) checkGrant(ctx context.Context, user authenticationv1.UserInfo, ns string,
	spec *custodyv1alpha1.CredentialGrantSpec) ([]string, error) {
	var missing []string
	c := spec.Credential
	switch {
	case c.Secret != nil:
		ok, err := a.allowed(ctx, user, authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "get", Resource: resourceSecrets, Name: c.Secret.Name})
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s may not get Secret %q in namespace %q, so may not grant it: "+
				"a CredentialGrant hands out only what its author could read", user.Username, c.Secret.Name, ns))
		}
	case c.KubernetesRole != nil:
		msg, err := a.checkRole(ctx, user, ns, c.KubernetesRole)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			missing = append(missing, msg)
		}
	case c.SPIFFE != nil && (len(c.SPIFFE.DNSNames) > 0 || len(c.SPIFFE.FederatesWith) > 0):
		ok, err := a.allowed(ctx, user, authorizationv1.ResourceAttributes{Namespace: ns, Verb: VerbIssue,
			Group: custodyv1alpha1.GroupVersion.Group, Resource: "credentialgrants", Subresource: SubresourceSPIFFE})
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s may not add DNS names or federated trust domains to SVIDs: "+
				"that needs %q on credentialgrants/%s (group %s) in namespace %q",
				user.Username, VerbIssue, SubresourceSPIFFE, custodyv1alpha1.GroupVersion.Group, ns))
		}
	}
	return missing, nil
}

// checkRole is RBAC's own rule for RoleBindings: the user may bind the role, or already holds
// every permission in it (in the grant's namespace, where the binding will be).
func (a *authorizer) checkRole(ctx context.Context, user authenticationv1.UserInfo, ns string,
	r *custodyv1alpha1.KubernetesRoleCredential) (string, error) {
	resource := "roles"
	if r.Kind == custodyv1alpha1.RoleKindClusterRole {
		resource = "clusterroles"
	}
	ok, err := a.allowed(ctx, user, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "bind",
		Group: rbacv1.GroupName, Resource: resource, Name: r.Name})
	if err != nil || ok {
		return "", err
	}
	what := fmt.Sprintf("%s %q", r.Kind, r.Name)
	var rules []rbacv1.PolicyRule
	if r.Kind == custodyv1alpha1.RoleKindClusterRole {
		var cr rbacv1.ClusterRole
		err = a.reader.Get(ctx, types.NamespacedName{Name: r.Name}, &cr)
		rules = cr.Rules
	} else {
		var role rbacv1.Role
		err = a.reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: r.Name}, &role)
		rules = role.Rules
	}
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("%s may not bind %s in namespace %q, and it does not exist, so it cannot be checked "+
			"that %s holds its permissions", user.Username, what, ns, user.Username), nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	var checks []authorizationv1.ResourceAttributes
	for _, rule := range rules {
		names := rule.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				for _, v := range rule.Verbs {
					for _, n := range names {
						checks = append(checks, authorizationv1.ResourceAttributes{Namespace: ns, Verb: v,
							Group: g, Resource: resource, Subresource: sub, Name: n})
					}
				}
			}
		}
	}
	if len(checks) > maxRuleChecks {
		return fmt.Sprintf("%s may not bind %s in namespace %q; it has too many permissions (%d) to check one by one, "+
			"so granting it needs bind on %s", user.Username, what, ns, len(checks), resource), nil
	}
	var lacking []string
	for _, c := range checks {
		ok, err := a.allowed(ctx, user, c)
		if err != nil {
			return "", err
		}
		if !ok {
			lacking = append(lacking, describe(c))
		}
	}
	if len(lacking) == 0 {
		return "", nil
	}
	sort.Strings(lacking)
	if len(lacking) > 8 {
		lacking = append(lacking[:8], fmt.Sprintf("and %d more", len(lacking)-8))
	}
	return fmt.Sprintf("%s may not bind %s in namespace %q and does not hold all of its permissions: missing %s "+
		"(RBAC's escalation rule: grant a role only with bind on it or holding everything it allows)",
		user.Username, what, ns, strings.Join(lacking, "; ")), nil
}

func describe(a authorizationv1.ResourceAttributes) string {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	if a.Group != "" {
		res += "." + a.Group
	}
	s := a.Verb + " " + res
	if a.Name != "" {
		s += " " + a.Name
	}
	return s
}
