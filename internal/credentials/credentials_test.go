package credentials

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
)

func wf(name string, labels map[string]string) *custodyv1alpha1.Workflow {
	return &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "finance", Labels: labels}}
}

func roleGrant(subjects ...custodyv1alpha1.GrantSubject) *custodyv1alpha1.CredentialGrant {
	return &custodyv1alpha1.CredentialGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "finance"},
		Spec: custodyv1alpha1.CredentialGrantSpec{Subjects: subjects,
			Credential: custodyv1alpha1.Credential{KubernetesRole: &custodyv1alpha1.KubernetesRoleCredential{Kind: "Role", Name: "r"}}},
	}
}

func TestCovers(t *testing.T) {
	byName := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"}})
	bySelector := roleGrant(custodyv1alpha1.GrantSubject{Steps: []string{"post"},
		WorkflowSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "invoices"}}})
	emptySelector := roleGrant(custodyv1alpha1.GrantSubject{Steps: []string{"post"}, WorkflowSelector: &metav1.LabelSelector{}})
	for _, c := range []struct {
		name string
		g    *custodyv1alpha1.CredentialGrant
		wf   *custodyv1alpha1.Workflow
		step string
		want bool
	}{
		{"by name", byName, wf("pay", nil), "post", true},
		{"other step", byName, wf("pay", nil), "route", false},
		{"other workflow", byName, wf("pay-2", nil), "post", false},
		{"by selector", bySelector, wf("x", map[string]string{"app": "invoices"}), "post", true},
		{"selector mismatch", bySelector, wf("x", map[string]string{"app": "other"}), "post", false},
		{"an empty selector matches nothing", emptySelector, wf("x", map[string]string{"app": "invoices"}), "post", false},
		{"other namespace", byName, &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "pay", Namespace: "ops"}}, "post", false},
	} {
		if got := Covers(c.g, c.wf, c.step); got != c.want {
			t.Errorf("%s: Covers = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestCovers_images: a subject that names images covers a step only while it runs one of them.
func TestCovers_images(t *testing.T) {
	const pinned = "registry.example.com/erp-client@sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	run := func(image string) *custodyv1alpha1.Workflow {
		w := wf("pay", nil)
		w.Spec.Steps = []custodyv1alpha1.Step{{Name: "route", Image: "busybox"}, {Name: "post", Image: image}}
		return w
	}
	exact := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"}, Images: []string{pinned}})
	anyDigest := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"},
		Images: []string{"registry.example.com/erp-client@sha256:*"}})
	for _, c := range []struct {
		name  string
		g     *custodyv1alpha1.CredentialGrant
		image string
		want  bool
	}{
		{"the pinned image", exact, pinned, true},
		{"another digest", exact, "registry.example.com/erp-client@sha256:0000", false},
		{"the same repository by tag", exact, "registry.example.com/erp-client:2.0", false},
		{"any digest of the repository", anyDigest, "registry.example.com/erp-client@sha256:0000", true},
		{"a tag of the repository", anyDigest, "registry.example.com/erp-client:2.0", false},
		{"a repository whose name starts the same", anyDigest, "registry.example.com/erp-client-evil@sha256:0000", false},
	} {
		if got := Covers(c.g, run(c.image), "post"); got != c.want {
			t.Errorf("%s: Covers = %v, want %v", c.name, got, c.want)
		}
	}
	// A run of a template that is not resolved yet has no image to check.
	unresolved := wf("pay", nil)
	unresolved.Spec.WorkflowTemplateRef = &custodyv1alpha1.WorkflowTemplateRef{Name: "payments"}
	if Covers(exact, unresolved, "post") {
		t.Error("covers a step whose image is not known")
	}
	r := Check("g", exact, run("registry.example.com/erp-client:2.0"), "post", time.Now())
	if r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotCovered ||
		r.Message != `CredentialGrant g does not allow step post of workflow pay to run image "registry.example.com/erp-client:2.0"` {
		t.Errorf("refusal %+v", r)
	}
}

// TestCovers_forEach: a subject that names a forEach step covers each of its items' steps (and
// checks their image), one that names an item covers that item only, and neither covers a step
// that merely has a similar name.
func TestCovers_forEach(t *testing.T) {
	w := wf("rollout", nil)
	w.Spec.Steps = []custodyv1alpha1.Step{{Name: "deploy", Image: "registry.example.com/deployer:3", ForEach: []string{"eu", "us"}},
		{Name: "deploy-ap", Image: "registry.example.com/deployer:3"}}
	whole := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "rollout", Steps: []string{"deploy"},
		Images: []string{"registry.example.com/deployer:*"}})
	oneItem := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "rollout", Steps: []string{"deploy-eu"}})
	wrongImage := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "rollout", Steps: []string{"deploy"},
		Images: []string{"registry.example.com/other:*"}})
	for _, c := range []struct {
		g    *custodyv1alpha1.CredentialGrant
		step string
		want bool
	}{
		{whole, "deploy-eu", true}, {whole, "deploy-us", true}, {whole, "deploy-ap", false},
		{oneItem, "deploy-eu", true}, {oneItem, "deploy-us", false},
		{wrongImage, "deploy-eu", false},
	} {
		if got := Covers(c.g, w, c.step); got != c.want {
			t.Errorf("grant for %v covers %s: %v, want %v", c.g.Spec.Subjects[0].Steps, c.step, got, c.want)
		}
	}
	// Admission checks the run's steps as written: the forEach step itself, by the image its items run.
	if Check("g", whole, w, "deploy", time.Now()) != nil {
		t.Error("the grant does not cover the forEach step as written")
	}
	if r := Check("g", wrongImage, w, "deploy", time.Now()); r == nil || !strings.Contains(r.Message, `to run image "registry.example.com/deployer:3"`) {
		t.Errorf("refusal %+v, want one naming the image the items run", r)
	}
}

func TestImageAllowed(t *testing.T) {
	allowed := []string{"registry.example.com/tools/*", "docker.io/library/busybox:*", "ghcr.io/acme/deploy@sha256:abc"}
	for image, want := range map[string]bool{
		"registry.example.com/tools/kubectl:1.31": true,
		"registry.example.com/toolsx/kubectl:1":   false,
		"docker.io/library/busybox:1.36":          true,
		"docker.io/library/busybox":               false,
		"ghcr.io/acme/deploy@sha256:abc":          true,
		"ghcr.io/acme/deploy@sha256:abcd":         false,
		"":                                        false,
	} {
		if got := ImageAllowed(allowed, image); got != want {
			t.Errorf("ImageAllowed(%q) = %v, want %v", image, got, want)
		}
	}
}

func TestCheckOrder(t *testing.T) {
	w := wf("pay", nil)
	g := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"}})
	if r := Check("g", nil, w, "post", time.Now()); r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotFound {
		t.Errorf("missing grant: %+v", r)
	}
	if r := Check("g", g, w, "post", time.Now()); r != nil {
		t.Errorf("usable grant refused: %+v", r)
	}
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true}
	if r := Check("g", g, w, "post", time.Now()); r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotApproved {
		t.Errorf("unapproved grant: %+v", r)
	}
	g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "alice"}}
	// Recorded in status, but admission already removed the annotation (subjects changed).
	if r := Check("g", g, w, "post", time.Now()); r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotApproved {
		t.Errorf("grant whose approval annotation was cleared: %+v", r)
	}
	g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"alice"}`}
	if r := Check("g", g, w, "post", time.Now()); r != nil {
		t.Errorf("approved grant refused: %+v", r)
	}
	g.Spec.Suspended = true
	if r := Check("g", g, w, "post", time.Now()); r == nil || r.Reason != custodyv1alpha1.ReasonGrantSuspended || !strings.Contains(r.Message, "g") {
		t.Errorf("suspended grant: %+v", r)
	}
	if r := Check("g", g, w, "other", time.Now()); r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotCovered {
		t.Errorf("uncovered step: %+v", r)
	}
}

func TestTokenTTLBounds(t *testing.T) {
	g := roleGrant()
	if TokenTTL(g) != DefaultTokenTTL {
		t.Errorf("no ttl: %s", TokenTTL(g))
	}
	for ttl, want := range map[time.Duration]time.Duration{time.Minute: MinTokenTTL, 20 * time.Minute: 20 * time.Minute, 48 * time.Hour: MaxTokenTTL} {
		g.Spec.TTL = &metav1.Duration{Duration: ttl}
		if got := TokenTTL(g); got != want {
			t.Errorf("ttl %s: token %s, want %s", ttl, got, want)
		}
	}
}

func TestSecretSourceAndCopy(t *testing.T) {
	g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp", Namespace: "finance"},
		Spec: custodyv1alpha1.CredentialGrantSpec{Credential: custodyv1alpha1.Credential{
			Secret: &custodyv1alpha1.SecretCredential{Name: "erp-api", Keys: []string{"token"}}}}}
	if r := CheckSource(g, nil, false); r == nil || r.Reason != custodyv1alpha1.ReasonSourceNotFound {
		t.Errorf("missing: %+v", r)
	}
	if r := CheckSource(g, nil, true); r == nil || r.Reason != custodyv1alpha1.ReasonSourceNotGrantable {
		t.Errorf("not grantable: %+v", r)
	}
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "erp-api", Namespace: "finance"},
		Data: map[string][]byte{"user": []byte("u")}}
	if r := CheckSource(g, src, true); r == nil || !strings.Contains(r.Message, "token") {
		t.Errorf("missing key: %+v", r)
	}
	src.Data["token"] = []byte("t")
	if r := CheckSource(g, src, true); r != nil {
		t.Errorf("usable source refused: %+v", r)
	}
	cp := SecretCopy(g, src, metav1.OwnerReference{Kind: "Job", Name: "j"}, "pay-post-1-abcdef", nil)
	if len(cp.Data) != 1 || string(cp.Data["token"]) != "t" || cp.Labels[LabelCopyOf] != "erp-api" || cp.Namespace != "finance" {
		t.Errorf("copy %+v", cp)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src.CreationTimestamp = metav1.Time{Time: created}
	if !SourceChanged(src).Equal(created) {
		t.Errorf("SourceChanged without managed fields = %s", SourceChanged(src))
	}
	later := metav1.NewTime(created.Add(time.Hour))
	src.ManagedFields = []metav1.ManagedFieldsEntry{{Time: &later}, {}}
	if !SourceChanged(src).Equal(later.Time) {
		t.Errorf("SourceChanged = %s, want the latest managed-fields time", SourceChanged(src))
	}
}

func TestSVIDProperties(t *testing.T) {
	spiffe := func(x509 time.Duration, names ...string) *custodyv1alpha1.CredentialGrant {
		return &custodyv1alpha1.CredentialGrant{Spec: custodyv1alpha1.CredentialGrantSpec{Credential: custodyv1alpha1.Credential{
			SPIFFE: &custodyv1alpha1.SPIFFECredential{DNSNames: names, X509TTL: &metav1.Duration{Duration: x509}}}}}
	}
	var p SVIDProperties
	p.Add(spiffe(20*time.Minute, "a.example.org"))
	p.Add(spiffe(10*time.Minute, "a.example.org", "b.example.org"))
	p.Add(roleGrant())
	if len(p.DNSNames) != 2 || p.X509TTL != 10*time.Minute || p.JWTTTL != 0 {
		t.Errorf("properties %+v", p)
	}
	if got := CapTTL(p.X509TTL, 5*time.Minute, time.Hour); got != 10*time.Minute {
		t.Errorf("CapTTL(requested) = %s", got)
	}
	if got := CapTTL(0, 5*time.Minute, time.Hour); got != 5*time.Minute {
		t.Errorf("CapTTL(none) = %s", got)
	}
	if got := CapTTL(2*time.Hour, 5*time.Minute, time.Hour); got != time.Hour {
		t.Errorf("CapTTL(above the cap) = %s", got)
	}
}

func TestResourceNameDiffersPerGrant(t *testing.T) {
	a, b := ResourceName("pay-post-1-abcdef", "erp"), ResourceName("pay-post-1-abcdef", "vault")
	if a == b || !strings.HasPrefix(a, "pay-post-1-abcdef-g") || len(a) > 63+8 {
		t.Errorf("names %q %q", a, b)
	}
}

// TestGrantExpiry: from its expiresAt a grant lets no step hold its credential, and no issuance
// outlives it: an issuance expires at the earlier of its ttl and the grant's end.
func TestGrantExpiry(t *testing.T) {
	g := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"}})
	g.Spec.TTL = &metav1.Duration{Duration: 15 * time.Minute}
	end := time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC)
	g.Spec.ExpiresAt = &metav1.Time{Time: end}
	run := wf("pay", nil)
	if r := Check("g", g, run, "post", end.Add(-time.Second)); r != nil {
		t.Errorf("a second before the end: %+v, want allowed", r)
	}
	r := Check("g", g, run, "post", end)
	if r == nil || r.Reason != custodyv1alpha1.ReasonGrantExpired || r.Message != "CredentialGrant g expired at 2026-12-24T18:00:00Z (spec.expiresAt)" {
		t.Errorf("at the end: %+v, want GrantExpired naming the time", r)
	}
	for _, c := range []struct {
		issued, want time.Time
	}{
		{end.Add(-time.Hour), end.Add(-45 * time.Minute)}, // the ttl comes first
		{end.Add(-10 * time.Minute), end},                 // the grant's end comes first
	} {
		if got := ExpiresAt(g, c.issued); !got.Equal(c.want) {
			t.Errorf("issued %s: expires %s, want %s", c.issued, got, c.want)
		}
	}
	g.Spec.TTL = nil
	if got := ExpiresAt(g, end.Add(-time.Hour)); !got.Equal(end) {
		t.Errorf("without a ttl: expires %s, want the grant's end %s", got, end)
	}
	g.Spec.ExpiresAt = nil
	if got := ExpiresAt(g, end); !got.IsZero() {
		t.Errorf("without either: expires %s, want never", got)
	}
}

// TestApprovalLapse: with approval.validFor, an approval stands until approvedAt + validFor and
// from then on the grant issues nothing, with the approver and the time in the refusal.
func TestApprovalLapse(t *testing.T) {
	g := roleGrant(custodyv1alpha1.GrantSubject{WorkflowName: "pay", Steps: []string{"post"}})
	approved := time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC)
	g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: `{"approvedBy":"bob"}`}
	g.Spec.Approval = &custodyv1alpha1.GrantApproval{Required: true, ValidFor: &metav1.Duration{Duration: 2160 * time.Hour}}
	g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob", ApprovedAt: metav1.Time{Time: approved}}}
	lapse := approved.Add(2160 * time.Hour)
	run := wf("pay", nil)
	if r := Check("g", g, run, "post", lapse.Add(-time.Second)); r != nil {
		t.Errorf("a second before the lapse: %+v, want allowed", r)
	}
	r := Check("g", g, run, "post", lapse)
	if r == nil || r.Reason != custodyv1alpha1.ReasonGrantNotApproved ||
		r.Message != "CredentialGrant g: its approval by bob lapsed at 2026-11-30T09:00:00Z (approval.validFor): it needs approving again" {
		t.Errorf("at the lapse: %+v, want GrantNotApproved naming the approver and the time", r)
	}
	g.Spec.Approval.ValidFor = nil
	if r := Check("g", g, run, "post", lapse.Add(1000*time.Hour)); r != nil {
		t.Errorf("without validFor: %+v, want allowed", r)
	}
}

// TestRoleChanged: a role grant's approval covers the rules it records, as admission stamped their
// digest (else as the controller recorded it). With the rules themselves recorded for that
// approval, a role that allows nothing more keeps it and what was added is named; with the digest
// only, any change voids it. An approval that records nothing covers whatever the role holds, and
// only role grants have rules to change.
func TestRoleChanged(t *testing.T) {
	cm := func(verbs ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: verbs}
	}
	approved := []rbacv1.PolicyRule{cm("get", "list")}
	narrowed := []rbacv1.PolicyRule{cm("get")}
	widened := []rbacv1.PolicyRule{cm("get", "list"), {APIGroups: []string{""}, Resources: []string{"services", "secrets"}, Verbs: []string{"get", "list"}}}
	unnamed := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{"ledger"}}}
	roleGrant := func(annotation, recorded string, rules []rbacv1.PolicyRule) *custodyv1alpha1.CredentialGrant {
		g := &custodyv1alpha1.CredentialGrant{}
		g.Name = "configs"
		g.Spec.Credential.KubernetesRole = &custodyv1alpha1.KubernetesRoleCredential{Kind: custodyv1alpha1.RoleKindRole, Name: "cm-reader"}
		g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: annotation}
		g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{RoleRules: recorded, ApprovedRules: rules,
			ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob"}}
		return g
	}
	stampedFor := func(rules []rbacv1.PolicyRule) string {
		return `{"approvedBy":"bob","approvedAt":"2026-12-01T12:00:00Z","roleRules":"` + RulesDigest(rules) + `"}`
	}
	stamped, digest := stampedFor(approved), RulesDigest(approved)
	for _, tc := range []struct {
		name  string
		g     *custodyv1alpha1.CredentialGrant
		now   []rbacv1.PolicyRule // the role's rules now
		want  bool
		added []string
	}{
		{"stamped, the role unchanged", roleGrant(stamped, "", nil), approved, false, nil},
		{"stamped, no rules recorded, the role narrowed", roleGrant(stamped, "", nil), narrowed, true, nil},
		{"rules recorded, the role narrowed", roleGrant(stamped, digest, approved), narrowed, false, nil},
		{"rules recorded, the role widened", roleGrant(stamped, digest, approved), widened, true,
			[]string{"get, list services, secrets"}},
		{"rules recorded, a named rule widened to all", roleGrant(stampedFor(unnamed), RulesDigest(unnamed), unnamed), narrowed, true,
			[]string{"get configmaps"}},
		{"stamped anew since the record", roleGrant(stampedFor(widened), digest, approved), widened, false, nil},
		{"stamped anew since the record, the role changed since", roleGrant(stampedFor(widened), digest, approved), approved, true, nil},
		{"recorded by the controller, the role widened", roleGrant(`{"approvedBy":"bob"}`, digest, approved), widened, true,
			[]string{"get, list services, secrets"}},
		{"recorded by the controller (digest only), the role changed", roleGrant(`{"approvedBy":"bob"}`, digest, nil), narrowed, true, nil},
		{"no rules recorded yet", roleGrant("yes", "", nil), widened, false, nil},
	} {
		got, added := RoleChanged(tc.g, tc.now)
		lines := make([]string, 0, len(added))
		for _, r := range added {
			lines = append(lines, RuleString(r))
		}
		if got != tc.want || !slices.Equal(lines, tc.added) {
			t.Errorf("%s: RoleChanged %v %q, want %v %q", tc.name, got, lines, tc.want, tc.added)
		}
	}
	// Rule by rule, as kubectl custody get grant/NAME marks them.
	recorded := roleGrant(stamped, digest, approved)
	for _, tc := range []struct {
		rule          rbacv1.PolicyRule
		beyond, known bool
	}{{narrowed[0], false, true}, {widened[1], true, true}, {cm("get", "list", "watch"), true, true}} {
		if beyond, known := BeyondApproval(recorded, tc.rule); beyond != tc.beyond || known != tc.known {
			t.Errorf("BeyondApproval(%s) = %v, %v; want %v, %v", RuleString(tc.rule), beyond, known, tc.beyond, tc.known)
		}
	}
	if _, known := BeyondApproval(roleGrant(stamped, "", nil), widened[1]); known {
		t.Error("BeyondApproval known with the digest only")
	}
	secret := roleGrant(stamped, digest, approved)
	secret.Spec.Credential = custodyv1alpha1.Credential{Secret: &custodyv1alpha1.SecretCredential{Name: "db"}}
	if changed, _ := RoleChanged(secret, widened); changed {
		t.Error("a secret grant's role changed")
	}
}

// TestCompactRules: what a role allows beyond an approval (one verb, resource and name each, as
// rbac's Covers returns it) reads as few rules as it can, without joining all names with some.
func TestCompactRules(t *testing.T) {
	_, uncovered := rbacvalidation.Covers(nil, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}, ResourceNames: []string{"a", "b"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{NonResourceURLs: []string{"/healthz", "/metrics"}, Verbs: []string{"get"}},
	})
	compact := CompactRules(uncovered)
	got := make([]string, 0, len(compact))
	for _, r := range compact {
		got = append(got, RuleString(r))
	}
	want := []string{"get, update configmaps named a, b", "list configmaps", "get, list apps/deployments, apps/statefulsets",
		"get, list pods", "get /healthz, /metrics"}
	if !slices.Equal(got, want) {
		t.Errorf("CompactRules:\n got %q\nwant %q", got, want)
	}
}

// TestWithdrawnForItsRole: what steps hold under a role grant goes when the grant controller found
// its role changed since the approval the grant carries now (not one given since), or reaching
// beyond the step unapproved where that needs an approval, for the grant's current spec.
func TestWithdrawnForItsRole(t *testing.T) {
	at := metav1.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	g := &custodyv1alpha1.CredentialGrant{}
	g.Generation = 2
	g.Spec.Credential.KubernetesRole = &custodyv1alpha1.KubernetesRoleCredential{Kind: custodyv1alpha1.RoleKindRole, Name: "deployer"}
	g.Status.Approval = &custodyv1alpha1.GrantApprovalRecord{RoleRules: "sha256:aaaa",
		ApprovalRecord: custodyv1alpha1.ApprovalRecord{ApprovedBy: "bob", ApprovedAt: at}}
	g.Status.Conditions = []metav1.Condition{{Type: custodyv1alpha1.ConditionApproved, Status: metav1.ConditionFalse,
		Reason: custodyv1alpha1.ReasonRoleChanged}}
	for annotation, want := range map[string]bool{
		`{"approvedBy":"bob","approvedAt":"2026-12-01T12:00:00Z","roleRules":"sha256:aaaa"}`: true,
		`{"approvedBy":"bob","approvedAt":"2026-12-01T12:00:00Z"}`:                           true,
		`{"approvedBy":"bob","approvedAt":"2026-12-01T12:00:00Z","roleRules":"sha256:bbbb"}`: false, // approved again, the same second
		`{"approvedBy":"carol","approvedAt":"2026-12-01T13:00:00Z"}`:                         false,
		``: false,
	} {
		g.Annotations = map[string]string{custodyv1alpha1.AnnotationApproveGrant: annotation}
		if got := RoleChangedSinceApproval(g); got != want {
			t.Errorf("approval %q: RoleChangedSinceApproval %v, want %v", annotation, got, want)
		}
	}
	if ApprovalRequiredNow(g) {
		t.Error("ApprovalRequiredNow without the condition")
	}
	g.Status.Conditions = append(g.Status.Conditions, metav1.Condition{Type: custodyv1alpha1.ConditionStalled,
		Status: metav1.ConditionTrue, Reason: custodyv1alpha1.ReasonApprovalRequired, ObservedGeneration: 2})
	if !ApprovalRequiredNow(g) {
		t.Error("not ApprovalRequiredNow with the condition")
	}
	g.Generation = 3 // the grant changed since (it may require an approval now)
	if ApprovalRequiredNow(g) {
		t.Error("ApprovalRequiredNow for an earlier spec")
	}
}

// TestSecretCopyReadableByTheStep: the step, never root, can read its Secret copy and no other
// user can. The kubelet writes a Secret volume's files as root with the volume's mode; with the
// pod's fsGroup it gives them that group and adds group read (read-only volumes): the rules
// kubernetes/kubernetes pkg/volume SetVolumeOwnership applies, which KWOK nodes do not run.
func TestSecretCopyReadableByTheStep(t *testing.T) {
	g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp"}}
	v, m := SecretVolume(g, "pay-post-1-abc123")
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "pay", Namespace: "finance"}}
	job := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: &custodyv1alpha1.Step{Name: "post", Image: "erp:1"}, Number: 1,
		Volumes: []jobspec.MountedVolume{{Volume: v, Mount: m}}})
	pod := job.Spec.Template.Spec
	var mode int32 = 0o644 // the API's default
	for _, vol := range pod.Volumes {
		if vol.Name == v.Name && vol.Secret != nil && vol.Secret.DefaultMode != nil {
			mode = *vol.Secret.DefaultMode
		}
	}
	group := int64(0) // root's, without an fsGroup
	if fs := pod.SecurityContext.FSGroup; fs != nil {
		group, mode = *fs, mode|0o440
	}
	uid, gid := *pod.SecurityContext.RunAsUser, *pod.SecurityContext.RunAsGroup
	readable := mode&0o004 != 0 || gid == group && mode&0o040 != 0
	if uid == 0 || !readable {
		t.Errorf("the step (uid %d, gid %d) cannot read its Secret copy: owner root, group %d, mode %#o", uid, gid, group, mode)
	}
	if mode&0o004 != 0 || group == 0 && mode&0o040 != 0 {
		t.Errorf("users other than the step may read its Secret copy: group %d, mode %#o", group, mode)
	}
	if !m.ReadOnly || len(pod.Containers) != 1 {
		t.Errorf("the copy is mounted read-only into the step container alone: %+v, %d containers", m, len(pod.Containers))
	}
}
