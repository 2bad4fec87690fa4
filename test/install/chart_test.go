package install

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/custody-dev/custody/internal/testenv"
)

// The value sets the chart is checked with: what platform teams set.
var valueSets = map[string][]string{
	"minimal": {"spire.trustDomain=example.org", "spire.clusterName=prod"},
	"namespaced": {"spire.trustDomain=example.org", "spire.clusterName=prod", "watchNamespaces={payments,ci}",
		"spire.entryIDPrefix=custody-payments."},
	"cert-manager": {"spire.trustDomain=example.org", "spire.clusterName=prod", "webhook.certManagement=cert-manager"},
	"cert-manager-issuer": {"spire.trustDomain=example.org", "spire.clusterName=prod", "webhook.certManagement=cert-manager",
		"webhook.certManager.issuerRef.name=corp-ca", "webhook.certManager.issuerRef.kind=ClusterIssuer"},
	"crds-elsewhere": {"spire.trustDomain=example.org", "spire.clusterName=prod", "crds.install=false"},
	"spire-tcp-monitoring": {"spire.trustDomain=example.org", "spire.clusterName=prod",
		"spire.serverAddress=spire-server.spire:8081", "spire.mountWorkloadAPI=true", "metrics.serviceMonitor.enabled=true",
		"metrics.prometheusRule.enabled=true", "networkPolicy.enabled=true", "replicaCount=3", "image.tag=v0.1.0",
		"defaultTTLAfterFinished=168h", "priorityClassName=system-cluster-critical", "grantUnusedAfter=720h",
		"broadRolesNeedApproval=true", "grantOnRevoke=StopStep", "grantPolicy.approvalRequired=true", "grantPolicy.approvalMaxValidFor=2160h",
		"stepUserNamespaces=true"},
	"spire-socket": {"spire.trustDomain=example.org", "spire.clusterName=prod",
		"spire.serverAddress=unix:///run/spire/server/api.sock", "spire.serverSocketHostPath=/run/spire/server"},
}

func chartDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "charts", "custody")
	testenv.Track(t, dir)
	return dir
}

func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := testenv.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...) //nolint:gosec // the pinned helm from bin/
	cmd.Env = append(cmd.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return cmd.CombinedOutput()
}

func setArgs(values []string) []string {
	out := make([]string, 0, 2*len(values))
	for _, v := range values {
		out = append(out, "--set", v)
	}
	return out
}

// template renders the chart as release "custody" in custody-system.
func template(t *testing.T, values []string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", "custody", chartDir(t), "--namespace", "custody-system", "--kube-version", "1.37.2"}, setArgs(values)...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", values, err, out)
	}
	return decodeAll(t, out)
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func TestChartLints(t *testing.T) {
	for name, values := range valueSets {
		out, err := helm(t, append([]string{"lint", "--strict", chartDir(t), "--kube-version", "1.37.2"}, setArgs(values)...)...)
		if err != nil {
			t.Errorf("helm lint --strict (%s): %v\n%s", name, err, out)
		}
	}
}

// TestChartRenders checks what each value set must produce.
func TestChartRenders(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := template(t, values)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				if ns := o.GetNamespace(); ns != "" && ns != "custody-system" && name != "namespaced" {
					t.Errorf("%s %s in namespace %s", o.GetKind(), o.GetName(), ns)
				}
			}
			want := map[string]int{"Deployment": 1, "ServiceAccount": 1, "MutatingWebhookConfiguration": 1,
				"ValidatingWebhookConfiguration": 1, "PodDisruptionBudget": 1, "CustomResourceDefinition": 4}
			switch name {
			case "crds-elsewhere":
				want["CustomResourceDefinition"] = 0
			case "cert-manager":
				want["Certificate"], want["Issuer"], want["Secret"] = 1, 1, 0
			case "cert-manager-issuer":
				want["Certificate"], want["Issuer"], want["Secret"] = 1, 0, 0
			case "spire-tcp-monitoring":
				want["ServiceMonitor"], want["NetworkPolicy"], want["PrometheusRule"] = 1, 1, 1
			case "namespaced":
				want["Role"], want["RoleBinding"] = 3, 3 // payments, ci, and the release's own namespace
			default:
				want["Secret"] = 1
			}
			for kind, n := range want {
				if kinds[kind] != n {
					t.Errorf("%d %s, want %d", kinds[kind], kind, n)
				}
			}
			dep := byKind(objs, "Deployment")[0]
			containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			flags := strings.Join(toStrings(c["args"]), " ")
			for _, f := range []string{"--leader-elect", "--trust-domain=example.org", "--cluster-name=prod",
				"--mutating-webhook-configuration=custody-custody-system-mutating", "--webhook-secret-name=custody-webhook-cert"} {
				if !strings.Contains(flags, f) {
					t.Errorf("manager args %q lack %s", flags, f)
				}
			}
			sc, _ := c["securityContext"].(map[string]any)
			if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
				t.Errorf("container securityContext %v", sc)
			}
			valueSetChecks(t, name, flags, c, objs, dep)
		})
	}
}

// valueSetChecks checks what one value set asks of the rendered manager: its flags, image and
// pod spec.
func valueSetChecks(t *testing.T, name, flags string, c map[string]any, objs []*unstructured.Unstructured, dep *unstructured.Unstructured) {
	t.Helper()
	switch name {
	case "cert-manager", "cert-manager-issuer":
		if !strings.Contains(flags, "--webhook-cert-management=external") {
			t.Errorf("cert-manager install runs the manager with %s", flags)
		}
		for _, w := range append(byKind(objs, "MutatingWebhookConfiguration"), byKind(objs, "ValidatingWebhookConfiguration")...) {
			if w.GetAnnotations()["cert-manager.io/inject-ca-from"] != "custody-system/custody" {
				t.Errorf("%s %s: annotations %v", w.GetKind(), w.GetName(), w.GetAnnotations())
			}
		}
	case "namespaced":
		if !strings.Contains(flags, "--watch-namespaces=payments,ci") || !strings.Contains(flags, "--spire-entry-id-prefix=custody-payments.") {
			t.Errorf("namespaced manager args %s", flags)
		}
	case "spire-tcp-monitoring":
		if !strings.Contains(flags, "--spire-server-address=spire-server.spire:8081") {
			t.Errorf("SPIRE args %s", flags)
		}
		if img := c["image"]; img != "custody-controller:v0.1.0" {
			t.Errorf("image %v", img)
		}
		if !strings.Contains(flags, "--default-ttl-after-finished=168h") {
			t.Errorf("manager args %s lack the default ttlAfterFinished", flags)
		}
	}
	pc, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "priorityClassName")
	if want := map[bool]string{true: "system-cluster-critical"}[name == "spire-tcp-monitoring"]; pc != want {
		t.Errorf("priorityClassName %q, want %q", pc, want)
	}
	if name != "spire-tcp-monitoring" && strings.Contains(flags, "--default-ttl-after-finished") {
		t.Errorf("manager args %s set a default ttlAfterFinished nobody asked for", flags)
	}
	// Grants unused for 90 days are reported unless the platform team says otherwise.
	if want := map[bool]string{true: "720h", false: "2160h"}[name == "spire-tcp-monitoring"]; !strings.Contains(flags, "--grant-unused-after="+want) {
		t.Errorf("manager args %s, want --grant-unused-after=%s", flags, want)
	}
	// Broad roles need an approval only where the platform team asks it.
	if want := map[bool]string{true: "true", false: "false"}[name == "spire-tcp-monitoring"]; !strings.Contains(flags,
		"--broad-roles-need-approval="+want) {
		t.Errorf("manager args %s, want --broad-roles-need-approval=%s", flags, want)
	}
	// A revoked credential stops its step only where the platform team (or the grant) says so.
	if want := map[bool]string{true: "StopStep", false: "Continue"}[name == "spire-tcp-monitoring"]; !strings.Contains(flags,
		"--grant-on-revoke="+want) {
		t.Errorf("manager args %s, want --grant-on-revoke=%s", flags, want)
	}
	// Step pods get user namespaces of their own only where the platform team's nodes support them.
	if want := map[bool]string{true: "true", false: "false"}[name == "spire-tcp-monitoring"]; !strings.Contains(flags,
		"--step-user-namespaces="+want) {
		t.Errorf("manager args %s, want --step-user-namespaces=%s", flags, want)
	}
	// The grant policy is rendered only where it is asked for.
	if got, want := len(byKind(objs, "ValidatingAdmissionPolicy")), map[bool]int{true: 1}[name == "spire-tcp-monitoring"]; got != want {
		t.Errorf("%d ValidatingAdmissionPolicies, want %d", got, want)
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// TestChartAlertsQueryExportedMetrics: every alert of the chart's PrometheusRule queries metrics the
// manager exports (a renamed metric must not leave an alert that can never fire), with the
// blocked-steps wait a platform team sets.
func TestChartAlertsQueryExportedMetrics(t *testing.T) {
	if len(testenv.UnknownMetrics(t, "custody_no_such_metric")) != 1 {
		t.Fatal("UnknownMetrics does not report a metric nobody defines")
	}
	objs := template(t, []string{"spire.trustDomain=example.org", "spire.clusterName=prod",
		"metrics.prometheusRule.enabled=true", "metrics.prometheusRule.blockedFor=30m"})
	rules := byKind(objs, "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules", len(rules))
	}
	groups, _, _ := unstructured.NestedSlice(rules[0].Object, "spec", "groups")
	alerts := map[string]map[string]any{}
	for _, g := range groups {
		list, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range list {
			rule := r.(map[string]any)
			alerts[fmt.Sprint(rule["alert"])] = rule
			if unknown := testenv.UnknownMetrics(t, fmt.Sprint(rule["expr"])); len(unknown) > 0 {
				t.Errorf("alert %v queries %v, which the manager does not export", rule["alert"], unknown)
			}
		}
	}
	if r := alerts["CustodyStepsBlocked"]; r == nil || r["for"] != "30m" {
		t.Errorf("CustodyStepsBlocked: %v", r)
	}
	for _, name := range []string{"CustodyRevocationFailing", "CustodyGrantRotationOverdue", "CustodyGrantsUnused", "CustodyGrantsBroadAccess",
		"CustodyGrantsUnprotected", "CustodyGrantRoleChanged", "CustodyGrantReviewDue"} {
		if alerts[name] == nil {
			t.Errorf("alerts %v lack %s", alerts, name)
		}
	}
}

// TestChartSchemaRefusesBadValues: a wrong value stops the install with a message naming it.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	cases := map[string]struct {
		values []string
		want   string
	}{
		"SPIFFE ID as trust domain":   {[]string{"spire.trustDomain=spiffe://example.org", "spire.clusterName=prod"}, "/spire/trustDomain"},
		"unknown cert management":     {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "webhook.certManagement=self-signed"}, "/webhook/certManagement': value must be one of 'controller', 'cert-manager'"},
		"duration without unit":       {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "spire.maxSVIDTTL=60"}, "/spire/maxSVIDTTL"},
		"priority class not a name":   {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "priorityClassName=Critical"}, "/priorityClassName"},
		"TTL in days":                 {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "defaultTTLAfterFinished=7d"}, "/defaultTTLAfterFinished"},
		"unused after in days":        {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "grantUnusedAfter=90d"}, "/grantUnusedAfter"},
		"approval policy as a word":   {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "broadRolesNeedApproval=yes"}, "/broadRolesNeedApproval"},
		"revoke policy misspelt":      {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "grantOnRevoke=Stop"}, "/grantOnRevoke"},
		"review period in days":       {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "grantPolicy.approvalMaxValidFor=90d"}, "/grantPolicy/approvalMaxValidFor"},
		"grant policy misspelt":       {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "grantPolicy.requireApproval=true"}, "additional properties 'requireApproval' not allowed"},
		"misspelt value":              {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "replicas=3"}, "additional properties 'replicas' not allowed"},
		"no replicas":                 {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "replicaCount=0"}, "/replicaCount"},
		"namespace name not DNS":      {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "watchNamespaces={Payments}"}, "/watchNamespaces/0"},
		"trust domain missing":        {[]string{"spire.clusterName=prod"}, "spire.trustDomain is required"},
		"socket without its host dir": {[]string{"spire.trustDomain=example.org", "spire.clusterName=prod", "spire.serverAddress=unix:///run/spire/api.sock"}, "spire.serverSocketHostPath is required"},
	}
	for name, tc := range cases {
		out, err := helm(t, append([]string{"template", "custody", chartDir(t), "--kube-version", "1.37.2"}, setArgs(tc.values)...)...)
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: err %v, output does not say %q:\n%s", name, err, tc.want, out)
		}
	}
}

// rulePairs flattens rules into "group resource[/names] verb" strings.
func rulePairs(t *testing.T, rules any) []string {
	t.Helper()
	data, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	var rs []rbacv1.PolicyRule
	if err := yaml.Unmarshal(data, &rs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, fmt.Sprintf("%s %s%v %s", g, res, r.ResourceNames, v))
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out = append(out, fmt.Sprintf("url %s %s", u, v))
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func managerRules(t *testing.T, objs []*unstructured.Unstructured, kind, name string) []string {
	t.Helper()
	var all []string
	for _, o := range byKind(objs, kind) {
		if o.GetName() == name {
			all = append(all, rulePairs(t, o.Object["rules"])...)
		}
	}
	sort.Strings(all)
	return slices.Compact(all)
}

// TestChartRBACIsWhatTheCodeDeclares: the manager's permissions in the chart are exactly those the
// code declares with +kubebuilder:rbac markers (config/rbac/role.yaml, which the kustomize install
// uses too), nothing more; with watchNamespaces the ClusterRole keeps only cluster-scoped reads, and
// of namespaces only those watched, by name.
func TestChartRBACIsWhatTheCodeDeclares(t *testing.T) {
	kustomize := render(t)
	want := managerRules(t, kustomize, "ClusterRole", "custody-manager")
	if len(want) < 20 {
		t.Fatalf("config/default's manager ClusterRole has only %d permissions", len(want))
	}
	rename := func(pairs []string) []string {
		out := make([]string, len(pairs))
		for i, p := range pairs {
			p = strings.ReplaceAll(p, "custody-mutating-webhook-configuration", "custody-custody-system-mutating")
			out[i] = strings.ReplaceAll(p, "custody-validating-webhook-configuration", "custody-custody-system-validating")
		}
		sort.Strings(out)
		return out
	}
	got := managerRules(t, template(t, valueSets["minimal"]), "ClusterRole", "custody-manager")
	if !slices.Equal(got, rename(want)) {
		t.Errorf("chart manager ClusterRole differs from the code's markers:\n chart: %v\n code:  %v", got, rename(want))
	}

	objs := template(t, valueSets["namespaced"])
	cluster := managerRules(t, objs, "ClusterRole", "custody-manager")
	for _, p := range cluster {
		res := strings.Split(p, " ")[1]
		scoped := false
		for _, c := range []string{"nodes", "namespaces", "clusterroles", "priorityclasses", "mutatingwebhookconfigurations", "validatingwebhookconfigurations", "subjectaccessreviews"} {
			scoped = scoped || strings.HasPrefix(res, c+"[")
		}
		if !scoped {
			t.Errorf("namespaced install grants %q cluster-wide", p)
		}
	}
	var nsRoles []*unstructured.Unstructured
	for _, r := range byKind(objs, "Role") {
		if r.GetName() == "custody-manager" {
			nsRoles = append(nsRoles, r)
		}
	}
	if len(nsRoles) != 2 {
		t.Fatalf("%d manager Roles, want one in payments and one in ci", len(nsRoles))
	}
	union := append(slices.Clone(cluster), rulePairs(t, nsRoles[0].Object["rules"])...)
	sort.Strings(union)
	union = slices.Compact(union)
	for _, p := range rename(want) {
		// The labels of the watched namespaces, not of every namespace: each is listed and watched
		// by name (a metadata.name field selector, which RBAC checks against resourceNames).
		p = strings.Replace(p, " namespaces[] ", " namespaces[payments ci] ", 1)
		if !slices.Contains(union, p) {
			t.Errorf("namespaced install lacks %q", p)
		}
	}
	for _, p := range union {
		if strings.HasPrefix(p, " namespaces[") && !strings.HasPrefix(p, " namespaces[payments ci] ") {
			t.Errorf("namespaced install grants %q: only the watched namespaces, by name", p)
		}
	}
}

// TestChartAndKustomizeInstallTheSame: config/default and the chart's defaults install the same
// CRDs, manager permissions and admission rules.
func TestChartAndKustomizeInstallTheSame(t *testing.T) {
	kustomize, chart := render(t), template(t, valueSets["minimal"])
	spec := func(objs []*unstructured.Unstructured, kind string) map[string]string {
		out := map[string]string{}
		for _, o := range byKind(objs, kind) {
			var key string
			var v any
			switch kind {
			case "CustomResourceDefinition":
				key, v = o.GetName(), o.Object["spec"]
			default:
				webhooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
				for _, w := range webhooks {
					w := w.(map[string]any)
					delete(w, "clientConfig")
					data, _ := yaml.Marshal(w)
					out[fmt.Sprint(w["name"])] = string(data)
				}
				continue
			}
			data, _ := yaml.Marshal(v)
			out[key] = string(data)
		}
		return out
	}
	for _, kind := range []string{"CustomResourceDefinition", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		k, c := spec(kustomize, kind), spec(chart, kind)
		if len(k) == 0 {
			t.Errorf("config/default renders no %s", kind)
		}
		for name, v := range k {
			if c[name] != v {
				t.Errorf("%s %s differs between config/default and the chart", kind, name)
			}
		}
		if len(c) != len(k) {
			t.Errorf("%d %s in the chart, %d in config/default", len(c), kind, len(k))
		}
	}
}

// TestChartAcceptedByTheAPIServer server-side applies the chart's output to a real API server (in a
// namespace of its own release), as `helm install` would send it.
func TestChartAcceptedByTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := env.Namespace(t)
	bin, err := testenv.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	values := append(slices.Clone(valueSets["minimal"]), "crds.install=false") // the envtest API server has them
	args := append([]string{"template", "accepted", chartDir(t), "--namespace", ns, "--kube-version", "1.37.2"}, setArgs(values)...)
	out, err := exec.Command(bin, args...).CombinedOutput() //nolint:gosec // pinned helm
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	objs := decodeAll(t, out)
	for _, u := range objs {
		if k := u.GetKind(); k == "MutatingWebhookConfiguration" || k == "ValidatingWebhookConfiguration" {
			continue // they would send this test server's Custody writes to a webhook that is not running
		}
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("helm"), client.ForceOwnership); err != nil {
			t.Errorf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for _, u := range objs {
		if u.GetKind() == "ClusterRole" || u.GetKind() == "ClusterRoleBinding" {
			_ = env.Client.Delete(ctx, u)
		}
	}
}
