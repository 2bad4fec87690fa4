package spire_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
)

// TestAgentPropagation measures, with a real spire-agent (join_token node attestation, unix
// workload attestor) and Custody's recommended settings (server events-based cache with a 1 s
// reload, agent sync_interval 1 s), how long after an entry is created the agent serves its SVID
// to the workload, and how long after the entry is deleted it stops. It asserts that both
// happen; the numbers it logs are recorded in docs/identity.md.
func TestAgentPropagation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// CUSTODY_AGENT_SYNC=5s measures the agent's default instead, for comparison.
	sync := time.Second
	if v := os.Getenv("CUSTODY_AGENT_SYNC"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CUSTODY_AGENT_SYNC: %v", err)
		}
		sync = d
	}
	agent, err := server.StartAgent(ctx, sync)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = agent.Close() }()
	c := realClient(t)
	wl, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+agent.Socket))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wl.Close() }()
	parent := spiffeid.RequireFromString(agent.ID)
	served := func(id spiffeid.ID) bool {
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		defer fcancel()
		svids, err := wl.FetchX509SVIDs(fctx)
		return err == nil && slices.ContainsFunc(svids, func(s *x509svid.SVID) bool { return s.ID == id })
	}
	waitFor := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 60*time.Second {
				t.Fatalf("%s: not within 60s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}

	const rounds = 6
	var up, down []time.Duration
	for i := range rounds + 1 {
		id := spiffeid.RequireFromSegments(td, "measure", strconv.Itoa(i))
		e := identity.Entry{ID: fmt.Sprintf("measure.%d", i), SPIFFEID: id, ParentID: parent,
			Selectors:   []identity.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}},
			X509SVIDTTL: 5 * time.Minute, JWTSVIDTTL: time.Minute, ExpiresAt: time.Now().Add(time.Hour)}
		res, err := c.Create(ctx, []identity.Entry{e})
		noErrors(t, "Create", res, err)
		u := waitFor("SVID served after the entry was created", func() bool { return served(id) })
		res, err = c.Delete(ctx, []string{e.ID})
		noErrors(t, "Delete", res, err)
		d := waitFor("SVID no longer served after the entry was deleted", func() bool { return !served(id) })
		if i == 0 {
			t.Logf("warm-up round (agent attesting and syncing for the first time): served after %s, gone after %s", u, d)
			continue
		}
		up, down = append(up, u), append(down, d)
	}
	slices.Sort(up)
	slices.Sort(down)
	defer t.Logf("agent sync_interval %s, over %d entries: SVID served after entry creation: median %s, max %s; "+
		"no longer served after entry deletion: median %s, max %s",
		sync, rounds, up[rounds/2].Round(time.Millisecond), up[rounds-1].Round(time.Millisecond),
		down[rounds/2].Round(time.Millisecond), down[rounds-1].Round(time.Millisecond))

	// The same agent gives this process an admin identity, with which the registrar reaches the
	// server over TCP with mutual TLS instead of the admin socket.
	adminID := spiffeid.RequireFromSegments(td, "custody", "controller")
	if _, err := server.CLI(ctx, "entry", "create", "-admin", "-parentID", agent.ID, "-spiffeID", adminID.String(),
		"-selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
		t.Fatal(err)
	}
	waitFor("the admin SVID served", func() bool { return served(adminID) })
	tcp, err := spire.Dial(ctx, spire.Options{Address: fmt.Sprintf("127.0.0.1:%d", server.Port),
		ServerID: spiffeid.RequireFromSegments(td, "spire", "server"), WorkloadAPISocket: "unix://" + agent.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tcp.Close() }()
	e := identity.Entry{ID: "tcp.1", SPIFFEID: spiffeid.RequireFromSegments(td, "over", "tcp"), ParentID: parent,
		Selectors: []identity.Selector{{Type: "unix", Value: "uid:424242"}}, X509SVIDTTL: time.Minute}
	res, err := tcp.Create(ctx, []identity.Entry{e})
	noErrors(t, "Create over TCP", res, err)
	if got, err := tcp.List(ctx, "tcp."); err != nil || len(got) != 1 {
		t.Fatalf("List over TCP = %v, %v", got, err)
	}
	res, err = tcp.Delete(ctx, []string{e.ID})
	noErrors(t, "Delete over TCP", res, err)
	// A server presenting another ID is refused.
	wrong, err := spire.Dial(ctx, spire.Options{Address: fmt.Sprintf("127.0.0.1:%d", server.Port),
		ServerID: spiffeid.RequireFromSegments(td, "not", "the", "server"), WorkloadAPISocket: "unix://" + agent.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wrong.Close() }()
	if _, err := wrong.List(ctx, "tcp."); err == nil {
		t.Error("the registrar accepted a server with an unexpected SPIFFE ID")
	}
}
