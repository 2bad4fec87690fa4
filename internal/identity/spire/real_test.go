package spire_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/types"

	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/spiretest"
)

// These tests talk to a real spire-server from bin/ (sqlite, admin socket in a temp dir).
var server *spiretest.Server

func TestMain(m *testing.M) {
	var err error
	server, err = spiretest.StartServer(context.Background())
	if err != nil {
		if server != nil {
			_ = server.Close()
		}
		fmt.Fprintln(os.Stderr, "starting spire-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = server.Close()
	os.Exit(code)
}

func realClient(t *testing.T) *spire.Client {
	t.Helper()
	c, err := spire.Dial(context.Background(), spire.Options{Address: server.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var td = spiffeid.RequireTrustDomainFromString(spiretest.TrustDomain)

func testEntry(id, step string, podUID types.UID) identity.Entry {
	return identity.Entry{
		ID:          id,
		SPIFFEID:    spiffeid.RequireFromSegments(td, "ns", "n", "workflow", "w", "step", step, "run", "u", "attempt", "1"),
		ParentID:    spiffeid.RequireFromSegments(td, "spire", "agent", "k8s_psat", "c", "node-1"),
		Selectors:   identity.PodSelectors("n", "sa-"+step, podUID, "step"),
		ExpiresAt:   time.Now().Add(time.Hour).Truncate(time.Second),
		X509SVIDTTL: 5 * time.Minute,
		JWTSVIDTTL:  2 * time.Minute,
	}
}

func noErrors(t *testing.T, what string, results []error, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for i, e := range results {
		if e != nil {
			t.Fatalf("%s: entry %d: %v", what, i, e)
		}
	}
}

func TestRealServerLifecycle(t *testing.T) {
	ctx := context.Background()
	c := realClient(t)
	prefix := "life."
	a, b := testEntry(prefix+"u.a.1", "a", "pod-a"), testEntry(prefix+"u.b.1", "b", "pod-b")
	foreign := testEntry("k8s-other.1", "other", "pod-x")

	res, err := c.Create(ctx, []identity.Entry{a, b, foreign})
	noErrors(t, "Create", res, err)
	res, err = c.Create(ctx, []identity.Entry{a, b})
	noErrors(t, "Create again", res, err)

	// The same ID for a replaced pod: the entry is updated, not duplicated.
	b2 := testEntry(b.ID, "b", "pod-b2")
	res, err = c.Create(ctx, []identity.Entry{b2})
	noErrors(t, "Create with a new pod UID", res, err)

	// The same registration with other TTLs and DNS names (a spiffe grant added or withdrawn): updated.
	a.X509SVIDTTL, a.DNSNames = 10*time.Minute, []string{"pay.example.org"}
	res, err = c.Create(ctx, []identity.Entry{a})
	noErrors(t, "Create with new properties", res, err)

	got, err := c.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y identity.Entry) int { return cmpString(x.ID, y.ID) })
	if len(got) != 2 {
		t.Fatalf("List(%q) = %d entries, want 2 (the foreign entry must not be listed): %+v", prefix, len(got), got)
	}
	for i, want := range []identity.Entry{a, b2} {
		g := got[i]
		if g.ID != want.ID || g.SPIFFEID != want.SPIFFEID || g.ParentID != want.ParentID ||
			!sameSet(g.Selectors, want.Selectors) ||
			!g.ExpiresAt.Equal(want.ExpiresAt) || g.X509SVIDTTL != want.X509SVIDTTL || g.JWTSVIDTTL != want.JWTSVIDTTL ||
			len(g.DNSNames) != len(want.DNSNames) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, want)
		}
		if g.CreatedAt.IsZero() {
			t.Errorf("entry %s has no creation time", g.ID)
		}
	}

	res, err = c.Delete(ctx, []string{a.ID, b.ID, prefix + "never-created.1"})
	noErrors(t, "Delete", res, err)
	res, err = c.Delete(ctx, []string{a.ID})
	noErrors(t, "Delete again", res, err)
	if got, err := c.List(ctx, prefix); err != nil || len(got) != 0 {
		t.Errorf("List after Delete = %+v, %v; want none", got, err)
	}
	if got, err := c.List(ctx, "k8s-other."); err != nil || len(got) != 1 {
		t.Errorf("the foreign entry is gone: %+v, %v", got, err)
	}
}

func TestRealServerRefusesBadEntry(t *testing.T) {
	c := realClient(t)
	bad := testEntry("bad id with spaces", "bad", "pod")
	res, err := c.Create(context.Background(), []identity.Entry{bad, testEntry("refuse.u.ok.1", "ok", "pod-ok")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] == nil || res[1] != nil {
		t.Fatalf("results = %v, want an error for the bad entry only", res)
	}
	t.Logf("SPIRE refused the bad entry: %v", res[0])
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sameSet(a, b []identity.Selector) bool {
	if len(a) != len(b) {
		return false
	}
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}
