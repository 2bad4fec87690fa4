package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// grantUser is a subject that RBAC lets use a grant (request its credential for a Workflow's
// steps), and the binding and role through which it may.
type grantUser struct {
	Subject string `json:"subject"`
	Through string `json:"through"`
}

// usersOf reads who may use a grant, as RBAC decides it: the subjects of the RoleBindings of the
// grant's namespace and of the ClusterRoleBindings whose role allows `use` on credentialgrants of
// custody.dev, on this one by name or on all of them. Groups are not expanded (the API server
// does not know their members), and members of system:masters may use any grant whatever RBAC
// says. It needs list on RoleBindings and ClusterRoleBindings and get on their roles.
func usersOf(ctx context.Context, c client.Reader, g *custodyv1alpha1.CredentialGrant) ([]grantUser, error) {
	var rbs rbacv1.RoleBindingList
	if err := c.List(ctx, &rbs, client.InNamespace(g.Namespace)); err != nil {
		return nil, err
	}
	var crbs rbacv1.ClusterRoleBindingList
	if err := c.List(ctx, &crbs); err != nil {
		return nil, err
	}
	roles := map[string]bool{} // whether the role (kind/namespace/name) allows use of the grant
	allows := func(ns string, ref rbacv1.RoleRef) (bool, error) {
		key := ref.Kind + "/" + ns + "/" + ref.Name
		if ok, seen := roles[key]; seen {
			return ok, nil
		}
		var rules []rbacv1.PolicyRule
		var err error
		if ref.Kind == "ClusterRole" {
			var cr rbacv1.ClusterRole
			err = c.Get(ctx, client.ObjectKey{Name: ref.Name}, &cr)
			rules = cr.Rules
		} else {
			var r rbacv1.Role
			err = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &r)
			rules = r.Rules
		}
		if err != nil && !apierrors.IsNotFound(err) { // a binding to a role that does not exist allows nothing
			return false, err
		}
		roles[key] = slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
			return credentials.RuleAllows(r, custodyv1alpha1.GroupVersion.Group, "credentialgrants", "use", g.Name)
		})
		return roles[key], nil
	}
	var out []grantUser
	add := func(binding string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		for _, s := range subjects {
			who := s.Kind + " " + s.Name
			if s.Kind == rbacv1.ServiceAccountKind {
				who = s.Kind + " " + s.Namespace + "/" + s.Name
			}
			u := grantUser{Subject: who, Through: binding + " -> " + ref.Kind + " " + ref.Name}
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	for _, b := range rbs.Items {
		ok, err := allows(g.Namespace, b.RoleRef)
		if err != nil {
			return nil, err
		}
		if ok {
			add("RoleBinding "+b.Name, b.RoleRef, b.Subjects)
		}
	}
	for _, b := range crbs.Items {
		ok, err := allows("", b.RoleRef)
		if err != nil {
			return nil, err
		}
		if ok {
			add("ClusterRoleBinding "+b.Name, b.RoleRef, b.Subjects)
		}
	}
	slices.SortFunc(out, func(a, b grantUser) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return strings.Compare(a.Through, b.Through)
	})
	return out, nil
}

// writeGrantUsers prints who may use the grant, or why that could not be read.
func writeGrantUsers(w io.Writer, users []grantUser, err error) error {
	if err != nil {
		reason := err.Error()
		if apierrors.IsForbidden(err) {
			reason = "you may not read RoleBindings, ClusterRoleBindings and their roles"
		}
		_, _ = fmt.Fprintf(w, "MAY REQUEST IT: unknown (%s)\n", reason)
		return nil
	}
	_, _ = fmt.Fprintf(w, "MAY REQUEST IT (use on the grant, as RBAC allows it): %d\n", len(users))
	if len(users) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SUBJECT\tTHROUGH")
	for _, u := range users {
		_, _ = fmt.Fprintf(tw, "%s\t%s\n", u.Subject, u.Through)
	}
	return tw.Flush()
}
