package spire_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
)

// fakeEntries is an in-process Entry API with SPIRE's semantics for what the registrar uses:
// per-entry statuses, AlreadyExists without an entry for a taken ID, NotFound on delete, paging.
type fakeEntries struct {
	entryv1.UnimplementedEntryServer
	mu       sync.Mutex
	entries  map[string]*types.Entry
	calls    map[string]int
	refuse   map[string]codes.Code // entry ID -> status to answer on create
	maxPage  int
	maxBatch int
}

func (f *fakeEntries) count(rpc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[rpc]++
}

func status(c codes.Code, msg string) *types.Status {
	return &types.Status{Code: int32(c), Message: msg} //nolint:gosec // gRPC codes are small
}

func (f *fakeEntries) BatchCreateEntry(_ context.Context, req *entryv1.BatchCreateEntryRequest) (*entryv1.BatchCreateEntryResponse, error) {
	f.count("BatchCreateEntry")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxBatch = max(f.maxBatch, len(req.Entries))
	resp := &entryv1.BatchCreateEntryResponse{}
	for _, e := range req.Entries {
		r := &entryv1.BatchCreateEntryResponse_Result{Status: status(codes.OK, "")}
		switch code, refused := f.refuse[e.Id]; {
		case refused:
			r.Status = status(code, "refused by the test")
		case f.entries[e.Id] != nil:
			r.Status = status(codes.AlreadyExists, "failed to create entry: UNIQUE constraint failed")
		default:
			f.entries[e.Id] = e
			r.Entry = &types.Entry{Id: e.Id}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fakeEntries) BatchUpdateEntry(_ context.Context, req *entryv1.BatchUpdateEntryRequest) (*entryv1.BatchUpdateEntryResponse, error) {
	f.count("BatchUpdateEntry")
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &entryv1.BatchUpdateEntryResponse{}
	for _, e := range req.Entries {
		r := &entryv1.BatchUpdateEntryResponse_Result{Status: status(codes.OK, "")}
		if f.entries[e.Id] == nil {
			r.Status = status(codes.NotFound, "entry not found")
		} else {
			f.entries[e.Id] = e
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fakeEntries) BatchDeleteEntry(_ context.Context, req *entryv1.BatchDeleteEntryRequest) (*entryv1.BatchDeleteEntryResponse, error) {
	f.count("BatchDeleteEntry")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxBatch = max(f.maxBatch, len(req.Ids))
	resp := &entryv1.BatchDeleteEntryResponse{}
	for _, id := range req.Ids {
		r := &entryv1.BatchDeleteEntryResponse_Result{Id: id, Status: status(codes.OK, "")}
		if code, refused := f.refuse[id]; refused {
			r.Status = status(code, "refused by the test")
		} else if f.entries[id] == nil {
			r.Status = status(codes.NotFound, "no such registration entry")
		}
		delete(f.entries, id)
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fakeEntries) ListEntries(_ context.Context, req *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	f.count("ListEntries")
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.entries))
	for id := range f.entries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	start := 0
	if req.PageToken != "" {
		start, _ = strconv.Atoi(req.PageToken)
	}
	size := min(int(req.PageSize), f.maxPage)
	resp := &entryv1.ListEntriesResponse{}
	for _, id := range ids[start:min(start+size, len(ids))] {
		resp.Entries = append(resp.Entries, f.entries[id])
	}
	if start+size < len(ids) {
		resp.NextPageToken = strconv.Itoa(start + size)
	}
	return resp, nil
}

// startFake serves a fake Entry API on a unix socket and returns it with a registrar dialled to
// it and the observed RPC outcomes.
func startFake(t *testing.T) (*fakeEntries, *spire.Client, *grpc.Server, map[string]codes.Code) {
	t.Helper()
	f := &fakeEntries{entries: map[string]*types.Entry{}, calls: map[string]int{}, refuse: map[string]codes.Code{}, maxPage: 500}
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	entryv1.RegisterEntryServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	var mu sync.Mutex
	observed := map[string]codes.Code{}
	c, err := spire.Dial(context.Background(), spire.Options{Address: "unix://" + sock, Observe: func(rpc string, code codes.Code) {
		mu.Lock()
		defer mu.Unlock()
		observed[rpc] = code
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return f, c, srv, observed
}

func manyEntries(n int) []identity.Entry {
	out := make([]identity.Entry, n)
	for i := range out {
		out[i] = testEntry(fmt.Sprintf("many.u.s%d.1", i), fmt.Sprintf("s%d", i), "pod")
	}
	return out
}

func TestBatchesAndPages(t *testing.T) {
	ctx := context.Background()
	f, c, _, observed := startFake(t)
	f.maxPage = 100
	entries := manyEntries(250)
	res, err := c.Create(ctx, entries)
	noErrors(t, "Create", res, err)
	if f.calls["BatchCreateEntry"] != 3 || f.maxBatch > 100 {
		t.Errorf("250 entries took %d BatchCreateEntry calls of at most %d; want 3 of at most 100", f.calls["BatchCreateEntry"], f.maxBatch)
	}
	got, err := c.List(ctx, "many.")
	if err != nil || len(got) != 250 {
		t.Fatalf("List = %d entries, %v; want 250 across pages", len(got), err)
	}
	if f.calls["ListEntries"] != 3 {
		t.Errorf("List took %d pages, want 3", f.calls["ListEntries"])
	}
	ids := make([]string, len(entries))
	for i := range entries {
		ids[i] = entries[i].ID
	}
	res, err = c.Delete(ctx, ids)
	noErrors(t, "Delete", res, err)
	if len(f.entries) != 0 {
		t.Errorf("%d entries left after Delete", len(f.entries))
	}
	if observed["BatchDeleteEntry"] != codes.OK || observed["ListEntries"] != codes.OK {
		t.Errorf("observed = %v, want OK outcomes reported", observed)
	}
}

func TestPerEntryErrors(t *testing.T) {
	ctx := context.Background()
	f, c, _, _ := startFake(t)
	entries := manyEntries(3)
	f.refuse[entries[1].ID] = codes.InvalidArgument
	res, err := c.Create(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || res[1] == nil || res[2] != nil {
		t.Fatalf("Create results = %v, want only the refused entry to fail", res)
	}
	// An ID taken by an entry with other contents is updated to match.
	changed := testEntry(entries[0].ID, "s0", "replaced-pod")
	res, err = c.Create(ctx, []identity.Entry{changed})
	noErrors(t, "Create over a taken ID", res, err)
	if got := f.entries[changed.ID].Selectors[2].Value; got != "pod-uid:replaced-pod" {
		t.Errorf("the taken entry was not updated: pod selector %q", got)
	}
	f.refuse[entries[2].ID] = codes.Internal
	res, err = c.Delete(ctx, []string{entries[0].ID, entries[2].ID, "never.1"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || res[1] == nil || res[2] != nil {
		t.Fatalf("Delete results = %v, want only the refused delete to fail (a missing ID is deleted)", res)
	}
}

func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, c, srv, observed := startFake(t)
	srv.Stop()
	_, err := c.Delete(ctx, []string{"x.u.s.1"})
	if err == nil || !spire.Unavailable(err) {
		t.Fatalf("Delete with the server down = %v, want an Unavailable error", err)
	}
	if observed["BatchDeleteEntry"] != codes.Unavailable {
		t.Errorf("observed = %v, want Unavailable reported", observed)
	}
	if spire.Unavailable(fmt.Errorf("other")) {
		t.Error("a non-RPC error counts as Unavailable")
	}
}

func TestDialRefusesBadAddresses(t *testing.T) {
	for _, addr := range []string{"", "http://spire:8081", "tcp://spire:8081"} {
		if _, err := spire.Dial(context.Background(), spire.Options{Address: addr}); err == nil {
			t.Errorf("Dial(%q) did not fail", addr)
		}
	}
	if _, err := spire.Dial(context.Background(), spire.Options{Address: "spire-server.spire:8081"}); err == nil {
		t.Error("Dial over TCP without a server ID did not fail")
	}
}
