// Package dag is the pure step-graph logic of a Workflow: it checks a graph (unknown
// dependencies, self-dependencies, cycles) and decides, from the phases of the steps, which steps
// may start now and which will never run. It has no client and no clock, so it is unit-tested and
// fuzzed on its own.
//
// The rules, which docs/workflows.md documents for users:
//   - A step may start when every step it depends on has ended as Succeeded or Skipped (a step
//     skipped because its `when` was false counts as done, as in Argo Workflows).
//   - A step whose dependency Failed, was Cancelled or was Blocked is Blocked: it never runs.
//   - Fail fast: once any step has Failed, no further step starts; steps that have not started
//     are Blocked, running steps finish.
//   - A step that failed but may (Tolerated: its onFailure is Continue) counts as done, like a
//     skipped one, and does not fail fast.
package dag

import (
	"fmt"
	"slices"
	"strings"
)

// Node is one step of the graph.
type Node struct {
	Name      string
	DependsOn []string
}

// Phase is what the graph needs to know about a step.
type Phase int

const (
	// NotStarted means the step has not started (it may be waiting for an approval or a backoff).
	NotStarted Phase = iota
	// Active means an attempt of the step is running or a retry is scheduled.
	Active
	// Succeeded means the step succeeded.
	Succeeded
	// Skipped means the step's `when` was false; dependents may run.
	Skipped
	// Tolerated means the step failed, but its failure lets the workflow go on (onFailure:
	// Continue): dependents may run, and nothing fails fast.
	Tolerated
	// Failed means the step failed after its retries.
	Failed
	// Cancelled means the step was stopped by a cancel or timeout.
	Cancelled
	// Blocked means the step will never run because a dependency did not succeed or the workflow
	// is failing.
	Blocked
)

// Ended reports whether the phase is final.
func (p Phase) Ended() bool { return p >= Succeeded }

// satisfies reports whether a dependency in this phase lets its dependents run.
func (p Phase) satisfies() bool { return p == Succeeded || p == Skipped || p == Tolerated }

// Graph is a checked, acyclic step graph.
type Graph struct {
	nodes []Node
	index map[string]int
	order []string
}

// New checks the nodes and returns the graph. Errors name the step and the problem: a duplicate
// name, a dependency that does not exist or is the step itself, or a cycle (with its path).
func New(nodes []Node) (*Graph, error) {
	g := &Graph{nodes: nodes, index: make(map[string]int, len(nodes))}
	for i, n := range nodes {
		if _, dup := g.index[n.Name]; dup {
			return nil, fmt.Errorf("step %q is defined twice", n.Name)
		}
		g.index[n.Name] = i
	}
	for _, n := range nodes {
		for _, d := range n.DependsOn {
			if d == n.Name {
				return nil, fmt.Errorf("step %q depends on itself", n.Name)
			}
			if _, ok := g.index[d]; !ok {
				return nil, fmt.Errorf("step %q depends on %q, which is not a step of this workflow", n.Name, d)
			}
		}
	}
	order, err := g.topo()
	if err != nil {
		return nil, err
	}
	g.order = order
	return g, nil
}

// topo orders the steps so that every step comes after its dependencies, keeping spec order
// among independent steps; it reports a cycle with its path.
func (g *Graph) topo() ([]string, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(g.nodes))
	order := make([]string, 0, len(g.nodes))
	var path []string
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			name := g.nodes[i].Name
			start := slices.Index(path, name)
			cycle := append(slices.Clone(path[start:]), name)
			return fmt.Errorf("dependsOn forms a cycle: %s", strings.Join(cycle, " -> "))
		}
		state[i] = visiting
		path = append(path, g.nodes[i].Name)
		for _, d := range g.nodes[i].DependsOn {
			if err := visit(g.index[d]); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		order = append(order, g.nodes[i].Name)
		return nil
	}
	for i := range g.nodes {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Order returns the step names so that every step comes after its dependencies.
func (g *Graph) Order() []string { return slices.Clone(g.order) }

// Ancestors returns every step that name depends on, directly or not.
func (g *Graph) Ancestors(name string) map[string]bool {
	out := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		i, ok := g.index[n]
		if !ok {
			return
		}
		for _, d := range g.nodes[i].DependsOn {
			if !out[d] {
				out[d] = true
				walk(d)
			}
		}
	}
	walk(name)
	return out
}

// Decision is what may happen next.
type Decision struct {
	// Ready are steps that may start now, in dependency order.
	Ready []string
	// Block are steps that will never run, with the reason for each: the name of the dependency
	// that did not succeed, or "" when the workflow is failing fast.
	Block map[string]string
}

// Next decides, from the current phases (a missing step is NotStarted), which steps may start
// and which are blocked. Blocking propagates in one call: a step whose dependency is blocked in
// this same decision is blocked too.
func (g *Graph) Next(phases map[string]Phase) Decision { return g.next(phases, true) }

// NextAll is Next without failing fast: a failed step blocks only its dependents. Finally steps
// are scheduled this way, so that one failed clean-up does not stop the others.
func (g *Graph) NextAll(phases map[string]Phase) Decision { return g.next(phases, false) }

func (g *Graph) next(phases map[string]Phase, failFast bool) Decision {
	d := Decision{Block: map[string]string{}}
	failing := false
	for _, p := range phases {
		if p == Failed && failFast {
			failing = true
			break
		}
	}
	phase := func(n string) Phase {
		if _, blocked := d.Block[n]; blocked {
			return Blocked
		}
		return phases[n]
	}
	for _, name := range g.order {
		if phases[name] != NotStarted {
			continue
		}
		ready, blockedBy := true, ""
		for _, dep := range g.nodes[g.index[name]].DependsOn {
			p := phase(dep)
			if p.Ended() && !p.satisfies() {
				blockedBy = dep
				break
			}
			if !p.Ended() {
				ready = false
			}
		}
		switch {
		case blockedBy != "":
			d.Block[name] = blockedBy
		case failing:
			d.Block[name] = ""
		case ready:
			d.Ready = append(d.Ready, name)
		}
	}
	return d
}
