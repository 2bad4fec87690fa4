package dag

import (
	"reflect"
	"strings"
	"testing"
)

func mustNew(t *testing.T, nodes ...Node) *Graph {
	t.Helper()
	g, err := New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func n(name string, deps ...string) Node { return Node{Name: name, DependsOn: deps} }

func TestNew_refusesBadGraphs(t *testing.T) {
	cases := []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"duplicate", []Node{n("a"), n("a")}, `step "a" is defined twice`},
		{"self", []Node{n("a", "a")}, `step "a" depends on itself`},
		{"unknown", []Node{n("a", "b")}, `step "a" depends on "b", which is not a step of this workflow`},
		{"two-cycle", []Node{n("a", "b"), n("b", "a")}, "dependsOn forms a cycle: a -> b -> a"},
		{"long cycle", []Node{n("x"), n("a", "c", "x"), n("b", "a"), n("c", "b")}, "dependsOn forms a cycle: a -> c -> b -> a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.nodes)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestGraph_Order(t *testing.T) {
	g := mustNew(t, n("publish", "lint", "test"), n("lint", "fetch"), n("test", "fetch"), n("fetch"))
	if got, want := g.Order(), []string{"fetch", "lint", "test", "publish"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Order() = %v, want %v", got, want)
	}
	if got := g.Ancestors("publish"); !reflect.DeepEqual(got, map[string]bool{"lint": true, "test": true, "fetch": true}) {
		t.Errorf("Ancestors(publish) = %v", got)
	}
}

func TestGraph_Next(t *testing.T) {
	diamond := []Node{n("fetch"), n("lint", "fetch"), n("test", "fetch"), n("publish", "lint", "test")}
	wide := []Node{n("a"), n("b"), n("c"), n("d"), n("join", "a", "b", "c", "d")}
	cases := []struct {
		name      string
		nodes     []Node
		phases    map[string]Phase
		wantReady []string
		wantBlock map[string]string
	}{
		{name: "diamond start", nodes: diamond, wantReady: []string{"fetch"}},
		{name: "diamond fans out", nodes: diamond, phases: map[string]Phase{"fetch": Succeeded}, wantReady: []string{"lint", "test"}},
		{name: "diamond waits for both", nodes: diamond, phases: map[string]Phase{"fetch": Succeeded, "lint": Succeeded, "test": Active}},
		{name: "diamond joins", nodes: diamond, phases: map[string]Phase{"fetch": Succeeded, "lint": Succeeded, "test": Skipped}, wantReady: []string{"publish"}},
		{name: "wide runs all roots at once", nodes: wide, wantReady: []string{"a", "b", "c", "d"}},
		{
			name: "failure blocks dependents and fails fast", nodes: diamond,
			phases:    map[string]Phase{"fetch": Succeeded, "lint": Failed, "test": Active},
			wantBlock: map[string]string{"publish": "lint"},
		},
		{
			name: "fail fast blocks independent steps too", nodes: []Node{n("a"), n("b"), n("c", "b")},
			phases:    map[string]Phase{"a": Failed, "b": Active},
			wantBlock: map[string]string{"c": ""},
		},
		{
			name: "cancelled dependency blocks", nodes: []Node{n("a"), n("b", "a"), n("c", "b")},
			phases:    map[string]Phase{"a": Cancelled},
			wantBlock: map[string]string{"b": "a", "c": "b"},
		},
		{
			name: "a tolerated failure lets dependents and other steps run", nodes: diamond,
			phases:    map[string]Phase{"fetch": Succeeded, "lint": Tolerated, "test": Succeeded},
			wantReady: []string{"publish"},
		},
		{
			name: "a tolerated failure does not fail fast", nodes: []Node{n("a"), n("b"), n("c", "b")},
			phases:    map[string]Phase{"a": Tolerated, "b": Succeeded},
			wantReady: []string{"c"},
		},
		{
			name: "a failure fails fast beside a tolerated one", nodes: []Node{n("a"), n("b"), n("c", "a")},
			phases:    map[string]Phase{"a": Tolerated, "b": Failed},
			wantBlock: map[string]string{"c": ""},
		},
		{name: "retrying step is not re-readied", nodes: []Node{n("a")}, phases: map[string]Phase{"a": Active}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, tc.nodes...).Next(tc.phases)
			if !reflect.DeepEqual(d.Ready, tc.wantReady) {
				t.Errorf("Ready = %v, want %v", d.Ready, tc.wantReady)
			}
			if tc.wantBlock == nil {
				tc.wantBlock = map[string]string{}
			}
			if !reflect.DeepEqual(d.Block, tc.wantBlock) {
				t.Errorf("Block = %v, want %v", d.Block, tc.wantBlock)
			}
		})
	}
}

// NextAll (finally steps): a failure blocks only its dependents; the others still start.
func TestGraph_NextAll(t *testing.T) {
	g := mustNew(t, n("cleanup"), n("notify", "cleanup"), n("report"))
	d := g.NextAll(map[string]Phase{"cleanup": Failed})
	if !reflect.DeepEqual(d.Ready, []string{"report"}) || !reflect.DeepEqual(d.Block, map[string]string{"notify": "cleanup"}) {
		t.Errorf("NextAll = ready %v, block %v; want report ready and notify blocked by cleanup", d.Ready, d.Block)
	}
	if d := g.Next(map[string]Phase{"cleanup": Failed}); len(d.Ready) != 0 {
		t.Errorf("Next (fail fast) readied %v", d.Ready)
	}
}
