package credentials

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func rule(groups, resources, verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

func list(s ...string) []string { return s }

func TestReach(t *testing.T) {
	const (
		readSecrets   = "read every Secret"
		changeSecrets = "change Secrets"
		runPods       = "run pods"
		execInto      = "run commands in"
		tokens        = "get tokens"
		rbac          = "grant access to others"
		impersonate   = "act as other users"
		grants        = "change CredentialGrants"
	)
	cases := []struct {
		name  string
		rules []rbacv1.PolicyRule
		want  []string // the beginnings of the phrases, in order
	}{
		{"nothing", nil, nil},
		{"a deployer: workloads' scale and config, no pods", []rbacv1.PolicyRule{
			rule(list("apps"), list("deployments"), list("get", "list", "watch")),
			rule(list("apps"), list("deployments/scale"), list("update", "patch")),
			rule(list(""), list("configmaps"), list("get", "create", "update")),
			rule(list(""), list("pods", "pods/log"), list("get", "list")),
		}, nil},
		{"named Secrets only", []rbacv1.PolicyRule{
			rule(list(""), list("secrets"), list("get", "update"), "erp-api"),
		}, nil},
		{"Secrets in another group are not Secrets", []rbacv1.PolicyRule{
			rule(list("apps"), list("secrets"), list("*")),
		}, nil},
		{"reads Secrets", []rbacv1.PolicyRule{rule(list(""), list("secrets"), list("list"))}, list(readSecrets)},
		{"changes Secrets", []rbacv1.PolicyRule{rule(list(""), list("secrets"), list("patch"))}, list(changeSecrets)},
		{"creates Jobs", []rbacv1.PolicyRule{rule(list("batch"), list("jobs"), list("create"))}, list(runPods)},
		{"any resource of apps", []rbacv1.PolicyRule{rule(list("apps"), list("*"), list("update"))}, list(runPods)},
		{"exec through pods/*", []rbacv1.PolicyRule{rule(list(""), list("pods/*"), list("create"))}, list(execInto)},
		{"exec through */exec, websocket get", []rbacv1.PolicyRule{rule(list(""), list("*/exec"), list("get"))}, list(execInto)},
		{"ephemeral containers read", []rbacv1.PolicyRule{rule(list(""), list("pods/ephemeralcontainers"), list("get"))}, nil},
		{"ephemeral containers added", []rbacv1.PolicyRule{rule(list(""), list("pods/ephemeralcontainers"), list("patch"))},
			list(execInto)},
		{"tokens", []rbacv1.PolicyRule{rule(list(""), list("serviceaccounts/token"), list("create"))}, list(tokens)},
		{"ServiceAccounts themselves", []rbacv1.PolicyRule{rule(list(""), list("serviceaccounts"), list("create", "get"))}, nil},
		{"RoleBindings", []rbacv1.PolicyRule{rule(list("rbac.authorization.k8s.io"), list("rolebindings"), list("create"))},
			list(rbac)},
		{"escalate on Roles", []rbacv1.PolicyRule{rule(list("rbac.authorization.k8s.io"), list("roles"), list("escalate"))},
			list(rbac)},
		{"impersonation", []rbacv1.PolicyRule{rule(list(""), list("serviceaccounts"), list("impersonate"))}, list(impersonate)},
		{"grants", []rbacv1.PolicyRule{rule(list("custody.dev"), list("credentialgrants"), list("update"))}, list(grants)},
		{"Kubernetes' edit role, in part", []rbacv1.PolicyRule{
			rule(list(""), list("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"),
				list("create", "delete", "deletecollection", "patch", "update")),
			rule(list(""), list("configmaps", "secrets", "serviceaccounts"), list("create", "delete", "patch", "update")),
			rule(list(""), list("secrets"), list("get", "list", "watch")),
			rule(list(""), list("serviceaccounts"), list("impersonate")),
			rule(list(""), list("serviceaccounts/token"), list("create")),
		}, list(readSecrets, changeSecrets, runPods, execInto, tokens, impersonate)},
		{"everything", []rbacv1.PolicyRule{rule(list("*"), list("*"), list("*"))},
			list(readSecrets, changeSecrets, runPods, execInto, tokens, rbac, impersonate, grants)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Reach(c.rules)
			if len(got) != len(c.want) {
				t.Fatalf("Reach = %q, want phrases beginning %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("phrase %d = %q, want it to begin %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestBroadRolesNeedApproval: a namespace's label decides; without it (or with a value that is
// neither "true" nor "false") the manager's default does.
func TestBroadRolesNeedApproval(t *testing.T) {
	const label = "custody.dev/broad-roles-need-approval"
	cases := []struct {
		labels    map[string]string
		byDefault bool
		want      bool
	}{
		{nil, false, false},
		{nil, true, true},
		{map[string]string{label: "true"}, false, true},
		{map[string]string{label: "false"}, true, false},
		{map[string]string{label: "yes"}, false, false},
		{map[string]string{label: "yes"}, true, true},
	}
	for _, c := range cases {
		if got := BroadRolesNeedApproval(c.labels, c.byDefault); got != c.want {
			t.Errorf("labels %v, default %v: %v, want %v", c.labels, c.byDefault, got, c.want)
		}
	}
}

func TestRuleAllows(t *testing.T) {
	const group, res = "custody.dev", "credentialgrants"
	for _, tc := range []struct {
		rule rbacv1.PolicyRule
		want bool
	}{
		{rule(list(group), list(res), list("use")), true},
		{rule(list(group), list(res), list("use"), "erp"), true},
		{rule(list(group), list(res), list("use"), "other", "erp"), true},
		{rule(list(group), list(res), list("use"), "other"), false},
		{rule(list("*"), list("*"), list("*")), true},
		{rule(list(group), list("*"), list("use")), true},
		{rule(list(group), list(res), list("get", "list", "watch")), false},
		{rule(list(""), list(res), list("use")), false},
		{rule(list(group), list("workflows"), list("use")), false},
	} {
		if got := RuleAllows(tc.rule, group, res, "use", "erp"); got != tc.want {
			t.Errorf("RuleAllows(%+v, use erp) = %v, want %v", tc.rule, got, tc.want)
		}
	}
}

// TestRulesDigest: the digest an approval records of a role changes with what the role allows,
// not with the order its rules or their lists are written in.
func TestRulesDigest(t *testing.T) {
	cms := rule(list(""), list("configmaps"), list("get", "list"))
	svc := rule(list(""), list("services"), list("get"))
	base := RulesDigest([]rbacv1.PolicyRule{cms, svc})
	if !strings.HasPrefix(base, "sha256:") || len(base) != len("sha256:")+64 {
		t.Fatalf("digest %q", base)
	}
	same := map[string][]rbacv1.PolicyRule{
		"rules in another order": {svc, cms},
		"verbs in another order": {rule(list(""), list("configmaps"), list("list", "get")), svc},
		"a rule written twice":   {cms, svc, cms},
	}
	for name, rules := range same {
		if d := RulesDigest(rules); d != base {
			t.Errorf("%s: %s, want %s", name, d, base)
		}
	}
	other := map[string][]rbacv1.PolicyRule{
		"a rule more":        {cms, svc, rule(list(""), list("secrets"), list("get"))},
		"a rule less":        {cms},
		"a verb more":        {rule(list(""), list("configmaps"), list("get", "list", "watch")), svc},
		"limited to a name":  {cms, rule(list(""), list("services"), list("get"), "web")},
		"another group":      {cms, rule(list("apps"), list("services"), list("get"))},
		"no rules (no role)": nil,
	}
	for name, rules := range other {
		if d := RulesDigest(rules); d == base {
			t.Errorf("%s: the same digest as the approved rules", name)
		}
	}
	if RulesDigest(nil) != RulesDigest([]rbacv1.PolicyRule{}) {
		t.Error("a role that does not exist and one without rules differ")
	}
}
