package dag

import (
	"fmt"
	"testing"
)

// graphFrom builds a graph of up to 16 steps from fuzz input. Step i may depend on any step,
// so cycles are possible; acyclic forces dependencies on earlier steps only.
func graphFrom(data []byte, acyclic bool) []Node {
	if len(data) == 0 {
		return nil
	}
	count := int(data[0])%16 + 1
	nodes := make([]Node, count)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("s%d", i)
	}
	for k := 1; k+1 < len(data); k += 2 {
		from, to := int(data[k])%count, int(data[k+1])%count
		if from == to {
			continue
		}
		if acyclic && to >= from {
			from, to = to, from
			if to == from {
				continue
			}
		}
		dep := nodes[to].Name
		dup := false
		for _, d := range nodes[from].DependsOn {
			dup = dup || d == dep
		}
		if !dup {
			nodes[from].DependsOn = append(nodes[from].DependsOn, dep)
		}
	}
	return nodes
}

// FuzzNew checks that New never panics, and that it accepts exactly the acyclic graphs (compared
// with Kahn's algorithm) and orders every step after its dependencies.
func FuzzNew(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 2})
	f.Add([]byte{2, 0, 1, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes := graphFrom(data, false)
		g, err := New(nodes)
		if acyclic := kahn(nodes); acyclic != (err == nil) {
			t.Fatalf("New error %v, but Kahn says acyclic=%v for %v", err, acyclic, nodes)
		}
		if err != nil {
			return
		}
		pos := map[string]int{}
		for i, name := range g.Order() {
			pos[name] = i
		}
		for _, n := range nodes {
			for _, d := range n.DependsOn {
				if pos[d] >= pos[n.Name] {
					t.Fatalf("%s ordered before its dependency %s", n.Name, d)
				}
			}
		}
	})
}

func kahn(nodes []Node) bool {
	indeg := map[string]int{}
	users := map[string][]string{}
	for _, n := range nodes {
		indeg[n.Name] += 0
		for _, d := range n.DependsOn {
			indeg[n.Name]++
			users[d] = append(users[d], n.Name)
		}
	}
	var queue []string
	for name, deg := range indeg {
		if deg == 0 {
			queue = append(queue, name)
		}
	}
	seen := 0
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		seen++
		for _, u := range users[n] {
			indeg[u]--
			if indeg[u] == 0 {
				queue = append(queue, u)
			}
		}
	}
	return seen == len(indeg)
}

// FuzzNext runs whole workflows with outcomes chosen by the fuzzer and checks that no step is
// ever made ready before its dependencies ended well, that nothing already started is blocked,
// and that every run ends with every step ended in at most one decision per step.
func FuzzNext(f *testing.F) {
	f.Add([]byte{4, 1, 0, 2, 0, 3, 1, 3, 2}, []byte{0, 1, 2, 0})
	f.Add([]byte{6, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0}, []byte{3, 3, 3})
	f.Fuzz(func(t *testing.T, graph, outcomes []byte) {
		nodes := graphFrom(graph, true)
		if len(nodes) == 0 {
			return
		}
		g, err := New(nodes)
		if err != nil {
			t.Fatalf("acyclic graph refused: %v", err)
		}
		deps := map[string][]string{}
		for _, n := range nodes {
			deps[n.Name] = n.DependsOn
		}
		phases := map[string]Phase{}
		o := 0
		for round := 0; ; round++ {
			if round > len(nodes)+1 {
				t.Fatalf("no end after %d rounds: %v", round, phases)
			}
			d := g.Next(phases)
			for name := range d.Block {
				if phases[name] != NotStarted {
					t.Fatalf("blocked %s, which was %v", name, phases[name])
				}
				phases[name] = Blocked
			}
			if len(d.Ready) == 0 {
				break
			}
			for _, name := range d.Ready {
				for _, dep := range deps[name] {
					if p := phases[dep]; p != Succeeded && p != Skipped && p != Tolerated {
						t.Fatalf("%s ready while its dependency %s is %v", name, dep, p)
					}
				}
				outcome := Succeeded
				if o < len(outcomes) {
					outcome = []Phase{Succeeded, Skipped, Failed, Cancelled, Tolerated}[outcomes[o]%5]
					o++
				}
				phases[name] = outcome
			}
		}
		for _, n := range nodes {
			if !phases[n.Name].Ended() {
				t.Fatalf("step %s never ended: %v", n.Name, phases)
			}
		}
	})
}
