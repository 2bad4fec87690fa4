// Package spire implements identity.Registrar on the SPIRE server's Entry API
// (github.com/spiffe/spire-api-sdk), reached over the server's admin unix socket or over TCP with
// mutual TLS using an X.509 SVID from the Workload API.
package spire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/custody-dev/custody/internal/identity"
)

const (
	// batchSize bounds the entries of one Batch* call.
	batchSize = 100
	// pageSize is the page size of ListEntries.
	pageSize = 500
)

// Options say how to reach the SPIRE server.
type Options struct {
	// Address is "unix:///path/to/api.sock" (the server's admin socket, authorized by file
	// permissions) or "host:port" (the server's TCP endpoint, with mutual TLS).
	Address string
	// ServerID is the SPIFFE ID the server must present over TCP (by default
	// spiffe://<trust-domain>/spire/server).
	ServerID spiffeid.ID
	// WorkloadAPISocket is where the controller's own X.509 SVID comes from over TCP
	// ("unix:///..."); empty means SPIFFE_ENDPOINT_SOCKET. Over TCP that SVID's entry must be an
	// admin entry in SPIRE.
	WorkloadAPISocket string
	// Observe, if set, is called after every RPC with its name and outcome (for metrics).
	Observe func(rpc string, code codes.Code)
}

// Client is an identity.Registrar on one SPIRE server.
type Client struct {
	conn    *grpc.ClientConn
	source  *workloadapi.X509Source
	entries entryv1.EntryClient
	observe func(string, codes.Code)
}

var _ identity.Registrar = (*Client)(nil)

// Dial connects to the SPIRE server (lazily: nothing fails here when the server is down; calls
// fail and are retried by the caller).
func Dial(ctx context.Context, o Options) (*Client, error) {
	c := &Client{observe: o.Observe}
	var creds grpc.DialOption
	target := o.Address
	switch {
	case strings.HasPrefix(o.Address, "unix://"):
		creds = grpc.WithTransportCredentials(insecure.NewCredentials())
	case o.Address == "" || strings.Contains(o.Address, "://"):
		return nil, fmt.Errorf("SPIRE server address %q: want unix:///path/to/api.sock or host:port", o.Address)
	default:
		if o.ServerID.IsZero() {
			return nil, errors.New("SPIRE server ID is required to authenticate the server over TCP")
		}
		var sourceOpts []workloadapi.X509SourceOption
		if o.WorkloadAPISocket != "" {
			sourceOpts = append(sourceOpts, workloadapi.WithClientOptions(workloadapi.WithAddr(o.WorkloadAPISocket)))
		}
		src, err := workloadapi.NewX509Source(ctx, sourceOpts...)
		if err != nil {
			return nil, fmt.Errorf("getting the controller's X.509 SVID from the Workload API: %w", err)
		}
		c.source = src
		creds = grpc.WithTransportCredentials(grpccredentials.MTLSClientCredentials(src, src, tlsconfig.AuthorizeID(o.ServerID)))
		target = "dns:///" + o.Address
	}
	conn, err := grpc.NewClient(target, creds)
	if err != nil {
		c.closeSource()
		return nil, fmt.Errorf("SPIRE server address %q: %w", o.Address, err)
	}
	c.conn = conn
	c.entries = entryv1.NewEntryClient(conn)
	return c, nil
}

// NewFromConn returns a Client on an existing connection (tests).
func NewFromConn(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, entries: entryv1.NewEntryClient(conn)}
}

// Close closes the connection and the X.509 source.
func (c *Client) Close() error {
	c.closeSource()
	return c.conn.Close()
}

func (c *Client) closeSource() {
	if c.source != nil {
		_ = c.source.Close()
	}
}

func (c *Client) record(rpc string, err error) {
	if c.observe != nil {
		c.observe(rpc, status.Code(err))
	}
}

// Create creates entries in batches. An entry whose ID exists already is updated to match, so a
// second Create of the same entry changes nothing.
func (c *Client) Create(ctx context.Context, entries []identity.Entry) ([]error, error) {
	results := make([]error, len(entries))
	for start := 0; start < len(entries); start += batchSize {
		batch := entries[start:min(start+batchSize, len(entries))]
		req := &entryv1.BatchCreateEntryRequest{Entries: make([]*types.Entry, len(batch)),
			OutputMask: &types.EntryMask{}}
		for i, e := range batch {
			req.Entries[i] = toProto(e)
		}
		resp, err := c.entries.BatchCreateEntry(ctx, req)
		c.record("BatchCreateEntry", err)
		if err != nil {
			return nil, rpcError("creating entries", err)
		}
		if len(resp.Results) != len(batch) {
			return nil, fmt.Errorf("creating entries: SPIRE answered %d results for %d entries", len(resp.Results), len(batch))
		}
		var clash []int
		for i, r := range resp.Results {
			switch code := statusCode(r.GetStatus()); {
			case code == codes.OK:
			case code == codes.AlreadyExists && r.GetEntry() != nil:
				// An entry with the same SPIFFE ID, parent and selectors exists: ours if the ID is,
				// and then made to match in everything else (TTLs, DNS names, expiry).
				if got := r.GetEntry().GetId(); got != batch[i].ID {
					results[start+i] = fmt.Errorf("entry %s: SPIRE holds the same registration as entry %s", batch[i].ID, got)
				} else {
					clash = append(clash, i)
				}
			case code == codes.AlreadyExists:
				// The ID is taken, by an earlier version of the entry (for example for a pod
				// that was replaced): make it match.
				clash = append(clash, i)
				results[start+i] = entryError("creating", batch[i].ID, r.GetStatus())
			default:
				results[start+i] = entryError("creating", batch[i].ID, r.GetStatus())
			}
		}
		if len(clash) > 0 {
			if err := c.updateExisting(ctx, batch, clash, results[start:]); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// updateExisting updates the entries at idx, whose IDs exist in SPIRE with other contents.
func (c *Client) updateExisting(ctx context.Context, batch []identity.Entry, update []int, results []error) error {
	req := &entryv1.BatchUpdateEntryRequest{OutputMask: &types.EntryMask{}}
	for _, i := range update {
		req.Entries = append(req.Entries, toProto(batch[i]))
	}
	resp, err := c.entries.BatchUpdateEntry(ctx, req)
	c.record("BatchUpdateEntry", err)
	if err != nil {
		return rpcError("updating entries", err)
	}
	for j, r := range resp.Results {
		if j >= len(update) {
			break
		}
		i := update[j]
		if statusCode(r.GetStatus()) == codes.OK {
			results[i] = nil
		} else {
			results[i] = entryError("updating", batch[i].ID, r.GetStatus())
		}
	}
	return nil
}

// Delete deletes entries by ID in batches; IDs that do not exist count as deleted.
func (c *Client) Delete(ctx context.Context, ids []string) ([]error, error) {
	results := make([]error, len(ids))
	for start := 0; start < len(ids); start += batchSize {
		batch := ids[start:min(start+batchSize, len(ids))]
		resp, err := c.entries.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: batch})
		c.record("BatchDeleteEntry", err)
		if err != nil {
			return nil, rpcError("deleting entries", err)
		}
		if len(resp.Results) != len(batch) {
			return nil, fmt.Errorf("deleting entries: SPIRE answered %d results for %d entries", len(resp.Results), len(batch))
		}
		for i, r := range resp.Results {
			switch statusCode(r.GetStatus()) {
			case codes.OK, codes.NotFound:
			default:
				results[start+i] = entryError("deleting", batch[i], r.GetStatus())
			}
		}
	}
	return results, nil
}

// List returns every entry whose ID starts with prefix. The Entry API cannot filter by ID, so it
// pages through all entries and keeps ours.
func (c *Client) List(ctx context.Context, prefix string) ([]identity.Entry, error) {
	var out []identity.Entry
	token := ""
	for {
		resp, err := c.entries.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: pageSize, PageToken: token})
		c.record("ListEntries", err)
		if err != nil {
			return nil, rpcError("listing entries", err)
		}
		for _, e := range resp.Entries {
			if !strings.HasPrefix(e.GetId(), prefix) {
				continue
			}
			ent, err := fromProto(e)
			if err != nil {
				return nil, err
			}
			out = append(out, ent)
		}
		token = resp.NextPageToken
		if token == "" {
			return out, nil
		}
	}
}

func toProto(e identity.Entry) *types.Entry {
	p := &types.Entry{
		Id:          e.ID,
		SpiffeId:    &types.SPIFFEID{TrustDomain: e.SPIFFEID.TrustDomain().Name(), Path: e.SPIFFEID.Path()},
		ParentId:    &types.SPIFFEID{TrustDomain: e.ParentID.TrustDomain().Name(), Path: e.ParentID.Path()},
		X509SvidTtl: seconds(e.X509SVIDTTL),
		JwtSvidTtl:  seconds(e.JWTSVIDTTL),
	}
	if !e.ExpiresAt.IsZero() {
		p.ExpiresAt = e.ExpiresAt.Unix()
	}
	for _, s := range e.Selectors {
		p.Selectors = append(p.Selectors, &types.Selector{Type: s.Type, Value: s.Value})
	}
	p.DnsNames = e.DNSNames
	p.FederatesWith = e.FederatesWith
	return p
}

func fromProto(p *types.Entry) (identity.Entry, error) {
	id, err := idFromProto(p.GetSpiffeId())
	if err != nil {
		return identity.Entry{}, fmt.Errorf("entry %s: SPIFFE ID: %w", p.GetId(), err)
	}
	parent, err := idFromProto(p.GetParentId())
	if err != nil {
		return identity.Entry{}, fmt.Errorf("entry %s: parent ID: %w", p.GetId(), err)
	}
	e := identity.Entry{ID: p.GetId(), SPIFFEID: id, ParentID: parent,
		X509SVIDTTL: time.Duration(p.GetX509SvidTtl()) * time.Second,
		JWTSVIDTTL:  time.Duration(p.GetJwtSvidTtl()) * time.Second}
	if p.GetExpiresAt() != 0 {
		e.ExpiresAt = time.Unix(p.GetExpiresAt(), 0)
	}
	if p.GetCreatedAt() != 0 {
		e.CreatedAt = time.Unix(p.GetCreatedAt(), 0)
	}
	for _, s := range p.GetSelectors() {
		e.Selectors = append(e.Selectors, identity.Selector{Type: s.GetType(), Value: s.GetValue()})
	}
	e.DNSNames, e.FederatesWith = p.GetDnsNames(), p.GetFederatesWith()
	return e, nil
}

func idFromProto(p *types.SPIFFEID) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(p.GetTrustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, p.GetPath())
}

func entryError(op, id string, s *types.Status) error {
	return fmt.Errorf("%s entry %s: %s: %s", op, id, statusCode(s), s.GetMessage())
}

// Unavailable reports whether err means the SPIRE server could not be reached (as opposed to
// refusing a request).
func Unavailable(err error) bool {
	var rpc *RPCError
	if !errors.As(err, &rpc) {
		return false
	}
	switch rpc.Code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// RPCError is a failed call to the SPIRE server.
type RPCError struct {
	Op   string
	Code codes.Code
	Msg  string
}

func (e *RPCError) Error() string { return fmt.Sprintf("SPIRE %s: %s: %s", e.Op, e.Code, e.Msg) }

func rpcError(op string, err error) error {
	s := status.Convert(err)
	return &RPCError{Op: op, Code: s.Code(), Msg: s.Message()}
}

// statusCode converts a per-entry status; codes outside gRPC's range read as Unknown.
func statusCode(s *types.Status) codes.Code {
	c := s.GetCode()
	if c < 0 || c > int32(codes.Unauthenticated) {
		return codes.Unknown
	}
	return codes.Code(c) //nolint:gosec // range checked above
}

// seconds converts a TTL to whole seconds, saturating at the int32 maximum.
func seconds(d time.Duration) int32 {
	return int32(min(d/time.Second, math.MaxInt32)) //nolint:gosec // bounded above
}
