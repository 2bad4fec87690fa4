// Package credentials decides whether a CredentialGrant lets a step attempt hold its credential,
// and builds what the attempt holds: a RoleBinding of the attempt's own ServiceAccount and the
// projected token volume of its pod (kubernetesRole), a copy of selected Secret keys (secret),
// SVID properties (spiffe). These are pure functions; Source, PullSecretsRefusal and
// CronDefinition are the package's only reads. Names
// are derived from the attempt and the grant, so issuing twice never makes a second copy.
package credentials

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

const (
	// LabelGrant is set on everything issued under a grant; its value is the grant's name.
	LabelGrant = "custody.dev/grant"
	// MountRoot is where credentials appear in the step container: <MountRoot>/<grant>/.
	MountRoot = "/var/run/secrets/custody.dev"
	// TokenFile is the file of a projected ServiceAccount token under the grant's directory.
	TokenFile = "token"

	// MinTokenTTL is the shortest projected token the API server accepts (expirationSeconds).
	MinTokenTTL = 10 * time.Minute
	// MaxTokenTTL is the longest projected token Custody asks for (the grant ttl's own bound).
	MaxTokenTTL = 24 * time.Hour
	// DefaultTokenTTL is a projected token's lifetime when the grant has no ttl.
	DefaultTokenTTL = time.Hour
)

// Covers says whether a grant's subjects include a step of a workflow, running the image the
// workflow's definition gives it when the subject names images. A subject that names a forEach
// step covers each of its items' steps.
func Covers(g *custodyv1alpha1.CredentialGrant, wf *custodyv1alpha1.Workflow, step string) bool {
	if g.Namespace != wf.Namespace {
		return false
	}
	for _, s := range g.Spec.Subjects {
		if !names(s, wf, step) || !selects(s, wf) {
			continue
		}
		if len(s.Images) == 0 || ImageAllowed(s.Images, stepImage(wf, step)) {
			return true
		}
	}
	return false
}

// Selects says whether any of a grant's subjects selects the workflow (by its name or labels),
// whatever steps they list.
func Selects(g *custodyv1alpha1.CredentialGrant, wf *custodyv1alpha1.Workflow) bool {
	return g.Namespace == wf.Namespace && slices.ContainsFunc(g.Spec.Subjects, func(s custodyv1alpha1.GrantSubject) bool {
		return selects(s, wf)
	})
}

// coversBarImages says whether a grant would cover the step if it ran an allowed image.
func coversBarImages(g *custodyv1alpha1.CredentialGrant, wf *custodyv1alpha1.Workflow, step string) bool {
	return g.Namespace == wf.Namespace && slices.ContainsFunc(g.Spec.Subjects, func(s custodyv1alpha1.GrantSubject) bool {
		return names(s, wf, step) && selects(s, wf)
	})
}

// names says whether a subject lists the step, or the forEach step it runs an item of.
func names(s custodyv1alpha1.GrantSubject, wf *custodyv1alpha1.Workflow, step string) bool {
	if slices.Contains(s.Steps, step) {
		return true
	}
	forEach, _ := wf.ForEachOf(step)
	return forEach != "" && slices.Contains(s.Steps, forEach)
}

func selects(s custodyv1alpha1.GrantSubject, wf *custodyv1alpha1.Workflow) bool {
	if s.WorkflowName != "" {
		return s.WorkflowName == wf.Name
	}
	if s.WorkflowSelector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s.WorkflowSelector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(wf.Labels))
}

// ImageAllowed says whether image is one of the allowed references: equal to one, or starting
// with one that ends in "*" (without the "*"). An empty image is never allowed.
func ImageAllowed(allowed []string, image string) bool {
	if image == "" {
		return false
	}
	for _, a := range allowed {
		if prefix, ok := strings.CutSuffix(a, "*"); (ok && strings.HasPrefix(image, prefix)) || a == image {
			return true
		}
	}
	return false
}

// stepImage is the image a step of the workflow runs, or the items of a forEach step run ("" when
// the run's template is not resolved yet, or there is no such step).
func stepImage(wf *custodyv1alpha1.Workflow, step string) string {
	def, ok := wf.Definition()
	if !ok {
		return ""
	}
	for _, st := range def.AllSteps() {
		if st.Name == step {
			return st.Image
		}
	}
	for _, st := range def.AllSteps() { // a forEach step as written: its items run its image
		if forEach, _ := wf.ForEachOf(st.Name); forEach == step {
			return st.Image
		}
	}
	return ""
}

// Kind is the kind of the grant's credential.
func Kind(g *custodyv1alpha1.CredentialGrant) custodyv1alpha1.CredentialKind {
	c := g.Spec.Credential
	switch {
	case c.KubernetesRole != nil:
		return custodyv1alpha1.CredentialKindKubernetesRole
	case c.Secret != nil:
		return custodyv1alpha1.CredentialKindSecret
	case c.SPIFFE != nil:
		return custodyv1alpha1.CredentialKindSPIFFE
	}
	return ""
}

// Supported are the credential kinds this version issues.
var Supported = []custodyv1alpha1.CredentialKind{custodyv1alpha1.CredentialKindKubernetesRole,
	custodyv1alpha1.CredentialKindSecret, custodyv1alpha1.CredentialKindSPIFFE}

// Refusal is why a grant does not let a step hold its credential now: a reason constant of the
// API and a message naming the grant.
type Refusal struct {
	Reason  string
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// Check says whether grant g (nil when it does not exist) lets the step hold its credential now.
func Check(name string, g *custodyv1alpha1.CredentialGrant, wf *custodyv1alpha1.Workflow, step string, now time.Time) *Refusal {
	switch {
	case g == nil:
		return &Refusal{custodyv1alpha1.ReasonGrantNotFound, fmt.Sprintf("CredentialGrant %s does not exist in namespace %s", name, wf.Namespace)}
	case !Covers(g, wf, step):
		msg := fmt.Sprintf("CredentialGrant %s does not list step %s of workflow %s among its subjects", name, step, wf.Name)
		if image := stepImage(wf, step); coversBarImages(g, wf, step) {
			msg = fmt.Sprintf("CredentialGrant %s does not allow step %s of workflow %s to run image %q", name, step, wf.Name, image)
		}
		return &Refusal{custodyv1alpha1.ReasonGrantNotCovered, msg}
	case g.Spec.Suspended:
		return &Refusal{custodyv1alpha1.ReasonGrantSuspended, fmt.Sprintf("CredentialGrant %s is suspended", name)}
	case g.Expired(now):
		return &Refusal{custodyv1alpha1.ReasonGrantExpired, fmt.Sprintf("CredentialGrant %s expired at %s (spec.expiresAt)", name,
			g.Spec.ExpiresAt.UTC().Format(time.RFC3339))}
	case g.Spec.Approval != nil && g.Spec.Approval.Required && !Approved(g):
		return &Refusal{custodyv1alpha1.ReasonGrantNotApproved, fmt.Sprintf("CredentialGrant %s requires an approval it does not have", name)}
	case g.Spec.Approval != nil && g.Spec.Approval.Required && g.ApprovalLapsed(now):
		return &Refusal{custodyv1alpha1.ReasonGrantNotApproved, fmt.Sprintf("CredentialGrant %s: its approval by %s lapsed at %s "+
			"(approval.validFor): it needs approving again", name, g.Status.Approval.ApprovedBy, g.ApprovalLapsesAt().UTC().Format(time.RFC3339))}
	case !slices.Contains(Supported, Kind(g)):
		return &Refusal{ReasonKindNotSupported,
			fmt.Sprintf("CredentialGrant %s is of kind %s, which this version of Custody does not issue yet", name, Kind(g))}
	}
	return nil
}

// ReasonKindNotSupported means the grant's credential kind is not issued by this version.
const ReasonKindNotSupported = "KindNotSupported"

// ExpiresAt is when an issuance made at issued expires under the grant's ttl and expiresAt,
// whichever comes first (zero: neither is set).
func ExpiresAt(g *custodyv1alpha1.CredentialGrant, issued time.Time) time.Time {
	var exp time.Time
	if g.Spec.TTL != nil {
		exp = issued.Add(g.Spec.TTL.Duration)
	}
	if end := g.Spec.ExpiresAt; end != nil && (exp.IsZero() || end.Before(&metav1.Time{Time: exp})) {
		exp = end.Time
	}
	return exp
}

// ResourceName is the name of what an attempt holds under a grant: the attempt's name (at most 63
// characters) and a hash of the grant's name.
func ResourceName(attemptName, grant string) string {
	sum := sha256.Sum256([]byte(grant))
	return attemptName + "-g" + hex.EncodeToString(sum[:])[:6]
}

// RoleBinding binds the attempt's ServiceAccount to the grant's Role or ClusterRole in the
// workflow's namespace only.
func RoleBinding(g *custodyv1alpha1.CredentialGrant, owner metav1.OwnerReference, attemptName, namespace string,
	attemptLabels map[string]string) *rbacv1.RoleBinding {
	role := g.Spec.Credential.KubernetesRole
	l := map[string]string{LabelGrant: g.Name}
	for k, v := range attemptLabels {
		l[k] = v
	}
	return &rbacv1.RoleBinding{
		TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ResourceName(attemptName, g.Name), Namespace: namespace, Labels: l,
			OwnerReferences: []metav1.OwnerReference{owner}},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: attemptName, Namespace: namespace}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: string(role.Kind), Name: role.Name},
	}
}

// TokenTTL is the expirationSeconds of a projected token under the grant: its ttl, within the
// bounds the API server accepts.
func TokenTTL(g *custodyv1alpha1.CredentialGrant) time.Duration {
	ttl := DefaultTokenTTL
	if g.Spec.TTL != nil {
		ttl = g.Spec.TTL.Duration
	}
	return min(max(ttl, MinTokenTTL), MaxTokenTTL)
}

// TokenVolume is the projected ServiceAccount token of the attempt's ServiceAccount for a
// kubernetesRole grant, and its read-only mount for the step container.
func TokenVolume(g *custodyv1alpha1.CredentialGrant) (corev1.Volume, corev1.VolumeMount) {
	name := "custody-" + ResourceName("token", g.Name)
	secs := int64(TokenTTL(g).Seconds())
	v := corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: g.Spec.Credential.KubernetesRole.Audience, ExpirationSeconds: &secs, Path: TokenFile,
		}}},
	}}}
	return v, corev1.VolumeMount{Name: name, MountPath: MountRoot + "/" + g.Name, ReadOnly: true}
}

// LabelCopyOf is set on a per-attempt copy of a Secret; its value is the source Secret's name.
const LabelCopyOf = "custody.dev/copy-of"

// CheckSource says whether a secret grant's source may be handed out: it exists in the grant's
// namespace, opts in with custody.dev/grantable=true, and has every listed key. source is nil
// when no grantable Secret of that name exists; exists says whether any Secret of that name does.
func CheckSource(g *custodyv1alpha1.CredentialGrant, source *corev1.Secret, exists bool) *Refusal {
	sc := g.Spec.Credential.Secret
	switch {
	case source == nil && exists:
		return &Refusal{custodyv1alpha1.ReasonSourceNotGrantable, fmt.Sprintf(
			"Secret %s of CredentialGrant %s lacks the label %s=true", sc.Name, g.Name, custodyv1alpha1.LabelGrantable)}
	case source == nil:
		return &Refusal{custodyv1alpha1.ReasonSourceNotFound, fmt.Sprintf(
			"Secret %s of CredentialGrant %s does not exist in namespace %s", sc.Name, g.Name, g.Namespace)}
	}
	var missing []string
	for _, k := range sc.Keys {
		if _, ok := source.Data[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return &Refusal{custodyv1alpha1.ReasonSourceNotFound, fmt.Sprintf(
			"Secret %s of CredentialGrant %s has no key %v", sc.Name, g.Name, missing)}
	}
	return nil
}

// SecretCopy is the attempt's own copy of the grant's source Secret with only the listed keys,
// owned by the attempt's Job.
func SecretCopy(g *custodyv1alpha1.CredentialGrant, source *corev1.Secret, owner metav1.OwnerReference, attemptName string,
	attemptLabels map[string]string) *corev1.Secret {
	l := map[string]string{LabelGrant: g.Name, LabelCopyOf: source.Name}
	for k, v := range attemptLabels {
		l[k] = v
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: ResourceName(attemptName, g.Name), Namespace: source.Namespace, Labels: l,
			OwnerReferences: []metav1.OwnerReference{owner}},
		Type: corev1.SecretTypeOpaque,
		Data: CopyData(g, source),
	}
}

// CopyData is the part of the source a copy holds: the listed keys only.
func CopyData(g *custodyv1alpha1.CredentialGrant, source *corev1.Secret) map[string][]byte {
	data := make(map[string][]byte, len(g.Spec.Credential.Secret.Keys))
	for _, k := range g.Spec.Credential.Secret.Keys {
		if v, ok := source.Data[k]; ok {
			data[k] = v
		}
	}
	return data
}

// SecretVolume mounts an attempt's copy read-only into the step container at
// <MountRoot>/<grant>/<key>. The kubelet writes the files as root; mode 0440, with the pod's
// fsGroup the step's own group (jobspec), makes them readable by the step and no one else. (At
// 0400 without an fsGroup they would be root's alone: the step, never root, could not read them.)
func SecretVolume(g *custodyv1alpha1.CredentialGrant, attemptName string) (corev1.Volume, corev1.VolumeMount) {
	name := "custody-" + ResourceName("secret", g.Name)
	v := corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: ResourceName(attemptName, g.Name), DefaultMode: ptrInt32(0o440),
	}}}
	return v, corev1.VolumeMount{Name: name, MountPath: MountRoot + "/" + g.Name, ReadOnly: true}
}

func ptrInt32(v int32) *int32 { return &v }

// SourceChanged is when a Secret last changed, as far as the API server records it: the latest
// time in its managed fields, or its creation.
func SourceChanged(s *corev1.Secret) time.Time {
	t := s.CreationTimestamp.Time
	for _, m := range s.ManagedFields {
		if m.Time != nil && m.Time.After(t) {
			t = m.Time.Time
		}
	}
	return t
}

// SVIDProperties are what spiffe grants add to an attempt's registration entry.
type SVIDProperties struct {
	DNSNames      []string
	FederatesWith []string
	// X509TTL and JWTTTL are the shortest TTLs the grants ask for (zero: none asked), not yet capped.
	X509TTL, JWTTTL time.Duration
}

// Add merges one spiffe grant's properties: names are united, TTLs take the shortest.
func (p *SVIDProperties) Add(g *custodyv1alpha1.CredentialGrant) {
	sc := g.Spec.Credential.SPIFFE
	if sc == nil {
		return
	}
	for _, n := range sc.DNSNames {
		if !slices.Contains(p.DNSNames, n) {
			p.DNSNames = append(p.DNSNames, n)
		}
	}
	for _, td := range sc.FederatesWith {
		if !slices.Contains(p.FederatesWith, td) {
			p.FederatesWith = append(p.FederatesWith, td)
		}
	}
	shorter := func(cur time.Duration, d *metav1.Duration) time.Duration {
		if d == nil || cur != 0 && cur <= d.Duration {
			return cur
		}
		return d.Duration
	}
	p.X509TTL, p.JWTTTL = shorter(p.X509TTL, sc.X509TTL), shorter(p.JWTTTL, sc.JWTTTL)
}

// CapTTL applies a requested TTL to a default under a cap: the request if set, never above the cap.
func CapTTL(requested, def, capTTL time.Duration) time.Duration {
	if requested <= 0 {
		requested = def
	}
	return min(requested, capTTL)
}

// Approved says whether a grant carries an approval: recorded in status by the grant controller
// and still present as the annotation (admission removes it the moment the grant's subjects or
// credential change, before the controller has caught up).
func Approved(g *custodyv1alpha1.CredentialGrant) bool {
	return g.Status.Approval != nil && g.Annotations[custodyv1alpha1.AnnotationApproveGrant] != ""
}
