// Package identity is Custody's SPIFFE identity scheme for step attempts and the narrow Registrar
// interface through which the controller creates and deletes the attempts' SPIRE registration
// entries. It holds no client: internal/identity/spire implements Registrar on the SPIRE server's
// Entry API.
//
// Every step attempt gets the SPIFFE ID
//
//	spiffe://<trust-domain>/ns/<namespace>/workflow/<name>/step/<step>/run/<workflow-uid>/attempt/<n>
//
// and one registration entry whose ID is derived from the same facts
// (<prefix><workflow-uid>.<step>.<n>), so creating it twice is harmless and it can be deleted
// without any record of having created it.
package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/types"

	"github.com/custody-dev/custody/internal/jobspec"
)

const (
	// MaxSPIFFEIDLength is the longest SPIFFE ID the scheme produces (the SPIFFE specification's
	// limit for URIs, in bytes).
	MaxSPIFFEIDLength = 2048
	// MaxEntryIDLength is the longest entry ID SPIRE accepts.
	MaxEntryIDLength = 255
	// MaxEntryIDPrefixLength bounds the configurable prefix so that every entry ID fits.
	MaxEntryIDPrefixLength = 64
	// DefaultEntryIDPrefix starts the ID of every entry Custody creates.
	DefaultEntryIDPrefix = "custody."

	// SelectorType is the type of the selectors of step entries: SPIRE's k8s workload attestor.
	SelectorType = "k8s"
)

// entryIDPrefixRE is what SPIRE accepts in an entry ID: letters, digits, '-', '.', '_'.
var entryIDPrefixRE = regexp.MustCompile(`^[-._A-Za-z0-9]{1,64}$`)

// Attempt names one step attempt of one workflow run.
type Attempt struct {
	Namespace   string
	Workflow    string
	WorkflowUID types.UID
	Step        string
	Number      int32
}

func (a Attempt) String() string {
	return fmt.Sprintf("%s/%s step %s attempt %d", a.Namespace, a.Workflow, a.Step, a.Number)
}

// Scheme derives SPIFFE IDs, agent IDs and entry IDs from the controller's settings.
type Scheme struct {
	TrustDomain spiffeid.TrustDomain
	// ClusterName is the cluster name in SPIRE agent IDs of the k8s_psat node attestor.
	ClusterName string
	// EntryIDPrefix starts every entry ID; it tells Custody's entries apart from those of
	// spire-controller-manager and of people.
	EntryIDPrefix string
}

// NewScheme validates the settings and returns the scheme.
func NewScheme(trustDomain, clusterName, entryIDPrefix string) (Scheme, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return Scheme{}, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	if td.Name() != trustDomain {
		return Scheme{}, fmt.Errorf("trust domain %q must be a bare name such as %q", trustDomain, td.Name())
	}
	if _, err := spiffeid.FromSegments(td, clusterName); err != nil || clusterName == "" {
		return Scheme{}, fmt.Errorf("cluster name %q is not a valid SPIFFE ID path segment", clusterName)
	}
	if !entryIDPrefixRE.MatchString(entryIDPrefix) {
		return Scheme{}, fmt.Errorf("entry ID prefix %q must be 1-%d letters, digits, '-', '.' or '_'",
			entryIDPrefix, MaxEntryIDPrefixLength)
	}
	return Scheme{TrustDomain: td, ClusterName: clusterName, EntryIDPrefix: entryIDPrefix}, nil
}

// SPIFFEID returns the attempt's SPIFFE ID, or an error when any part is not a valid path
// segment or the ID would be too long.
func (s Scheme) SPIFFEID(a Attempt) (spiffeid.ID, error) {
	if a.Number < 1 {
		return spiffeid.ID{}, fmt.Errorf("attempt number %d: must be at least 1", a.Number)
	}
	parts := map[string]string{"namespace": a.Namespace, "workflow": a.Workflow,
		"workflow UID": string(a.WorkflowUID), "step": a.Step}
	for what, v := range parts {
		if v == "" {
			return spiffeid.ID{}, fmt.Errorf("%s is empty", what)
		}
	}
	id, err := spiffeid.FromSegments(s.TrustDomain,
		"ns", a.Namespace, "workflow", a.Workflow, "step", a.Step,
		"run", string(a.WorkflowUID), "attempt", strconv.Itoa(int(a.Number)))
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID of %s: %w", a, err)
	}
	if n := len(id.String()); n > MaxSPIFFEIDLength {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID of %s is %d bytes, more than %d", a, n, MaxSPIFFEIDLength)
	}
	return id, nil
}

// AgentID returns the SPIFFE ID of the SPIRE agent on a node, as the k8s_psat node attestor
// names it.
func (s Scheme) AgentID(nodeUID types.UID) (spiffeid.ID, error) {
	if nodeUID == "" {
		return spiffeid.ID{}, errors.New("node UID is empty")
	}
	return spiffeid.FromSegments(s.TrustDomain, "spire", "agent", "k8s_psat", s.ClusterName, string(nodeUID))
}

// EntryID returns the deterministic ID of the attempt's registration entry:
// <prefix><workflow-uid>.<step>.<n>. Step names are DNS labels and UIDs hex and '-', so '.'
// separates the parts unambiguously.
func (s Scheme) EntryID(a Attempt) string {
	return s.RunPrefix(a.WorkflowUID) + a.Step + "." + strconv.Itoa(int(a.Number))
}

// RunPrefix starts the entry ID of every attempt of one workflow run.
func (s Scheme) RunPrefix(uid types.UID) string {
	return s.EntryIDPrefix + string(uid) + "."
}

// ParsedEntryID is what an entry ID says about its attempt.
type ParsedEntryID struct {
	WorkflowUID types.UID
	Step        string
	Number      int32
}

// ParseEntryID reads an entry ID that EntryID produced. ok is false for any other ID, including
// every ID without the prefix.
func (s Scheme) ParseEntryID(id string) (ParsedEntryID, bool) {
	rest, found := strings.CutPrefix(id, s.EntryIDPrefix)
	if !found {
		return ParsedEntryID{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return ParsedEntryID{}, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 32)
	if err != nil || n < 1 || strconv.Itoa(int(n)) != parts[2] {
		return ParsedEntryID{}, false
	}
	return ParsedEntryID{WorkflowUID: types.UID(parts[0]), Step: parts[1], Number: int32(n)}, true
}

// Selector is one SPIRE selector (type:value).
type Selector struct {
	Type  string
	Value string
}

func (s Selector) String() string { return s.Type + ":" + s.Value }

// PodSelectors are the selectors that match only one container of one pod: the namespace, the
// attempt's own ServiceAccount, the pod's UID and the container's name. The pod UID alone makes
// the entry unique to the pod; the others make a mistake in any one of them fail closed.
func PodSelectors(namespace, serviceAccount string, podUID types.UID, container string) []Selector {
	return []Selector{
		{Type: SelectorType, Value: "ns:" + namespace},
		{Type: SelectorType, Value: "sa:" + serviceAccount},
		{Type: SelectorType, Value: "pod-uid:" + string(podUID)},
		{Type: SelectorType, Value: "container-name:" + container},
	}
}

// Entry is one registration entry, as Custody sees it.
type Entry struct {
	ID        string
	SPIFFEID  spiffeid.ID
	ParentID  spiffeid.ID
	Selectors []Selector
	// ExpiresAt is when SPIRE stops honouring the entry even if Custody never deletes it: a
	// backstop, set to the attempt's deadline.
	ExpiresAt time.Time
	// X509SVIDTTL and JWTSVIDTTL bound each SVID issued for the entry.
	X509SVIDTTL time.Duration
	JWTSVIDTTL  time.Duration
	// DNSNames and FederatesWith come from spiffe CredentialGrants of the attempt.
	DNSNames      []string
	FederatesWith []string
	// CreatedAt is when the server created the entry (set on entries that List returns).
	CreatedAt time.Time
}

// Registrar creates, deletes and lists registration entries. Implementations are safe for
// concurrent use. Errors never contain anything secret: entries hold none.
type Registrar interface {
	// Create creates entries. An entry that already exists with the same ID is made to match.
	// The returned slice has one error (or nil) per entry; err is set when the call as a whole
	// failed (for example the server is unreachable), and then nothing is known about any entry.
	Create(ctx context.Context, entries []Entry) (results []error, err error)
	// Delete deletes entries by ID. An ID that does not exist counts as deleted.
	Delete(ctx context.Context, ids []string) (results []error, err error)
	// List returns every entry whose ID starts with prefix.
	List(ctx context.Context, prefix string) ([]Entry, error)
}

// Config is how the controller registers step identities.
type Config struct {
	Scheme Scheme
	// Registrar is nil when SPIRE is not configured: steps then run without identity.
	Registrar Registrar
	// ParentID, when set, is the parent of every entry (a node alias); otherwise the parent is
	// the SPIRE agent of the pod's node.
	ParentID *spiffeid.ID
	// X509SVIDTTL and JWTSVIDTTL are the SVID TTLs of step entries; MaxSVIDTTL caps them and every
	// TTL a CredentialGrant asks for.
	X509SVIDTTL time.Duration
	JWTSVIDTTL  time.Duration
	MaxSVIDTTL  time.Duration
	// MaxEntryLifetime is the entry expiry of an attempt that has no deadline (no step or
	// workflow timeout).
	MaxEntryLifetime time.Duration
	// SocketPath is where the SPIFFE CSI driver's Workload API socket appears in the step
	// container; SocketDir is the directory mounted.
	SocketPath string
	// CSIDriver is the name of the SPIFFE CSI driver that mounts the socket (csi.spiffe.io when
	// empty).
	CSIDriver string
	// SweepInterval is how often entries that belong to no running attempt are looked for.
	SweepInterval time.Duration
}

// Enabled says whether step attempts get identities.
func (c *Config) Enabled() bool { return c != nil && c.Registrar != nil }

// Validate checks the TTLs against the cap.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxSVIDTTL <= 0 {
		errs = append(errs, errors.New("the SVID TTL cap must be positive"))
	}
	for what, ttl := range map[string]time.Duration{"X.509 SVID TTL": c.X509SVIDTTL, "JWT SVID TTL": c.JWTSVIDTTL} {
		if ttl < time.Second || ttl > c.MaxSVIDTTL {
			errs = append(errs, fmt.Errorf("the %s %s must be between 1s and the cap %s", what, ttl, c.MaxSVIDTTL))
		}
	}
	if c.MaxEntryLifetime < time.Minute {
		errs = append(errs, fmt.Errorf("the entry lifetime %s must be at least 1m", c.MaxEntryLifetime))
	}
	if !strings.HasPrefix(c.SocketPath, "/") || strings.HasSuffix(c.SocketPath, "/") || strings.Count(c.SocketPath, "/") < 2 {
		errs = append(errs, fmt.Errorf("the Workload API socket path %q must be an absolute file path below a directory", c.SocketPath))
	}
	return errors.Join(errs...)
}

// SocketDir is the directory of the socket path: what the CSI volume is mounted as.
func (c *Config) SocketDir() string {
	return jobspec.WorkloadAPIDir(c.SocketPath)
}
