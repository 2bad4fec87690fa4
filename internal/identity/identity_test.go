package identity

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/types"
)

var entryIDRE = regexp.MustCompile(`^[-._A-Za-z0-9]+$`)

func testScheme(t *testing.T) Scheme {
	t.Helper()
	s, err := NewScheme("example.org", "prod-eu", DefaultEntryIDPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var attempt = Attempt{Namespace: "finance", Workflow: "pay-invoice-4711",
	WorkflowUID: "0b6f2d9e-4c1a-4e8b-9d43-2f1f0f7a9c11", Step: "post-payment", Number: 2}

func TestSPIFFEID(t *testing.T) {
	s := testScheme(t)
	id, err := s.SPIFFEID(attempt)
	if err != nil {
		t.Fatal(err)
	}
	want := "spiffe://example.org/ns/finance/workflow/pay-invoice-4711/step/post-payment/run/0b6f2d9e-4c1a-4e8b-9d43-2f1f0f7a9c11/attempt/2"
	if id.String() != want {
		t.Errorf("SPIFFEID = %s, want %s", id, want)
	}
	if !id.MemberOf(s.TrustDomain) {
		t.Errorf("%s is not in the trust domain", id)
	}
}

func TestSPIFFEIDRefusesBadParts(t *testing.T) {
	s := testScheme(t)
	for name, mutate := range map[string]func(*Attempt){
		"empty step":          func(a *Attempt) { a.Step = "" },
		"slash in workflow":   func(a *Attempt) { a.Workflow = "a/b" },
		"dot segment":         func(a *Attempt) { a.Step = ".." },
		"percent in ns":       func(a *Attempt) { a.Namespace = "a%2fb" },
		"zero attempt":        func(a *Attempt) { a.Number = 0 },
		"empty uid":           func(a *Attempt) { a.WorkflowUID = "" },
		"too long":            func(a *Attempt) { a.Workflow = strings.Repeat("w", MaxSPIFFEIDLength) },
		"upper-case is valid": nil,
	} {
		t.Run(name, func(t *testing.T) {
			a := attempt
			if mutate == nil {
				a.Step = "Post"
				if _, err := s.SPIFFEID(a); err != nil {
					t.Fatalf("SPIFFEID(%+v): %v", a, err)
				}
				return
			}
			mutate(&a)
			if id, err := s.SPIFFEID(a); err == nil {
				t.Fatalf("SPIFFEID(%+v) = %s, want an error", a, id)
			}
		})
	}
}

func TestEntryIDRoundTrip(t *testing.T) {
	s := testScheme(t)
	id := s.EntryID(attempt)
	if id != "custody.0b6f2d9e-4c1a-4e8b-9d43-2f1f0f7a9c11.post-payment.2" {
		t.Errorf("EntryID = %q", id)
	}
	if !strings.HasPrefix(id, s.RunPrefix(attempt.WorkflowUID)) {
		t.Errorf("%q does not start with the run prefix", id)
	}
	p, ok := s.ParseEntryID(id)
	if !ok || p.WorkflowUID != attempt.WorkflowUID || p.Step != attempt.Step || p.Number != attempt.Number {
		t.Errorf("ParseEntryID(%q) = %+v, %v", id, p, ok)
	}
	for _, foreign := range []string{
		"", "k8s.0b6f.step.1", "custody.", "custody.uid.step", "custody.uid.step.0", "custody.uid.step.01",
		"custody.uid.step.x", "custody..step.1", "custody.uid..1", "custody.uid.a.b.1", "7c0a1e2b-1111",
	} {
		if p, ok := s.ParseEntryID(foreign); ok {
			t.Errorf("ParseEntryID(%q) = %+v, want not ours", foreign, p)
		}
	}
}

func TestAgentID(t *testing.T) {
	s := testScheme(t)
	id, err := s.AgentID("5f1c")
	if err != nil || id.String() != "spiffe://example.org/spire/agent/k8s_psat/prod-eu/5f1c" {
		t.Errorf("AgentID = %s, %v", id, err)
	}
	if _, err := s.AgentID(""); err == nil {
		t.Error("AgentID of an empty UID did not fail")
	}
}

func TestNewSchemeRefusesBadSettings(t *testing.T) {
	for _, c := range []struct{ td, cluster, prefix string }{
		{"spiffe://example.org", "c", "p."},
		{"Example.org", "c", "p."},
		{"example.org", "", "p."},
		{"example.org", "a/b", "p."},
		{"example.org", "c", ""},
		{"example.org", "c", "with space"},
		{"example.org", "c", strings.Repeat("p", MaxEntryIDPrefixLength+1)},
	} {
		if _, err := NewScheme(c.td, c.cluster, c.prefix); err == nil {
			t.Errorf("NewScheme(%q, %q, %q) did not fail", c.td, c.cluster, c.prefix)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{X509SVIDTTL: 5 * time.Minute, JWTSVIDTTL: 5 * time.Minute, MaxSVIDTTL: time.Hour,
		MaxEntryLifetime: 24 * time.Hour, SocketPath: "/spiffe-workload-api/spire-agent.sock"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if good.SocketDir() != "/spiffe-workload-api" {
		t.Errorf("SocketDir = %q", good.SocketDir())
	}
	for name, mutate := range map[string]func(*Config){
		"x509 above cap": func(c *Config) { c.X509SVIDTTL = 2 * time.Hour },
		"jwt above cap":  func(c *Config) { c.JWTSVIDTTL = 2 * time.Hour },
		"zero ttl":       func(c *Config) { c.JWTSVIDTTL = 0 },
		"no cap":         func(c *Config) { c.MaxSVIDTTL = 0 },
		"short lifetime": func(c *Config) { c.MaxEntryLifetime = time.Second },
		"relative sock":  func(c *Config) { c.SocketPath = "spire-agent.sock" },
		"sock in root":   func(c *Config) { c.SocketPath = "/agent.sock" },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate did not fail", name)
		}
	}
}

// FuzzScheme checks that whatever the names, the scheme either refuses them or produces a valid
// SPIFFE ID in the trust domain of bounded length, and an entry ID SPIRE accepts that parses
// back to the same attempt.
func FuzzScheme(f *testing.F) {
	f.Add("finance", "pay", "0b6f2d9e-4c1a", "post", int32(1))
	f.Add("a", "b", "c", "d", int32(20))
	f.Add("ns/x", "..", "%", "", int32(0))
	s, err := NewScheme("example.org", "prod", DefaultEntryIDPrefix)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ns, wf, uid, step string, n int32) {
		a := Attempt{Namespace: ns, Workflow: wf, WorkflowUID: types.UID(uid), Step: step, Number: n}
		id, err := s.SPIFFEID(a)
		if err != nil {
			return
		}
		if len(id.String()) > MaxSPIFFEIDLength || !id.MemberOf(s.TrustDomain) {
			t.Fatalf("SPIFFEID(%+v) = %s", a, id)
		}
		if _, err := spiffeid.FromString(id.String()); err != nil {
			t.Fatalf("SPIFFEID(%+v) = %s does not parse: %v", a, id, err)
		}
		// Entry IDs are only derived from Kubernetes names and UIDs (DNS labels, hex and '-');
		// check the round trip for those.
		if !entryIDPrefixRE.MatchString(uid) || strings.Contains(uid, ".") || strings.Contains(step, ".") ||
			!entryIDPrefixRE.MatchString(step) {
			return
		}
		eid := s.EntryID(a)
		if !entryIDRE.MatchString(eid) {
			t.Fatalf("EntryID(%+v) = %q has characters SPIRE refuses", a, eid)
		}
		if len(uid) <= 36 && len(step) <= 63 && len(eid) > MaxEntryIDLength {
			t.Fatalf("EntryID(%+v) is %d characters, more than SPIRE accepts", a, len(eid))
		}
		p, ok := s.ParseEntryID(eid)
		if !ok || p.WorkflowUID != a.WorkflowUID || p.Step != a.Step || p.Number != a.Number {
			t.Fatalf("ParseEntryID(EntryID(%+v)) = %+v, %v", a, p, ok)
		}
	})
}
