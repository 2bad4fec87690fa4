package expr

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// kubeletExpander is a program that expands strings as the kubelet expands a container's command,
// args and env values: with Kubernetes' own expansion package, at the version the test cluster's
// binaries are built from (hack/tools/kubernetes pins it). It reads {"env": {...}, "in": [...]} and
// writes the expanded strings.
const kubeletExpander = `package main

import (
	"encoding/json"
	"os"

	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

func main() {
	var req struct {
		Env map[string]string
		In  []string
	}
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	mapping := expansion.MappingFuncFor(req.Env)
	out := make([]string, len(req.In))
	for i, s := range req.In {
		out[i] = expansion.Expand(s, mapping)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
`

// kubeletExpand runs Kubernetes' expansion over in, with the container variables env.
func kubeletExpand(t *testing.T, env map[string]string, in []string) []string {
	t.Helper()
	dir := t.TempDir()
	pins := filepath.Join("..", "..", "hack", "tools", "kubernetes")
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(pins, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil { //nolint:gosec // f is one of two constant names
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(kubeletExpander), 0o600); err != nil {
		t.Fatal(err)
	}
	req, err := json.Marshal(map[string]any{"env": env, "in": in})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run (Kubernetes' expansion): %v\n%s", err, stderr.String())
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return out
}

// TestForContainerAgainstTheKubelet: whatever a parameter or result holds, the program gets it as
// it is once the kubelet has expanded the container's args and env values; the same values put in
// without escaping are changed by the kubelet (which shows the check itself can fail). Our
// KubeletExpand gives what the kubelet gives, on all of them.
func TestForContainerAgainstTheKubelet(t *testing.T) {
	values := make([]string, 0, 215)
	values = append(values, "pa$$word", "$(HOME)", "$$(HOME)", "$$$(HOME)", "cost: 5$", "$", "$$", "$(", "$()",
		"$.items[0]", "${HOME}", "$(SPIFFE_ENDPOINT_SOCKET)", "$(UNDEFINED)", "a$(b$(HOME))c", "")
	r := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // test inputs, not secrets
	const alphabet = "$$$(()HOME)x "
	for range 200 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		values = append(values, string(b))
	}
	// The container's variables: what the author set, and what Custody sets.
	vars := map[string]string{"HOME": "/home/step", "SPIFFE_ENDPOINT_SOCKET": "unix:///spiffe-workload-api/socket"}

	escaped, raw := make([]string, 0, 2*len(values)), make([]string, 0, len(values))
	for _, v := range values {
		env := Env{Params: map[string]string{"v": v}}
		e, err := ForContainer("--value=$(params.v)", env)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := Substitute("--value=$(params.v)", env)
		escaped, raw = append(escaped, e), append(raw, s)
	}
	got := kubeletExpand(t, vars, append(escaped, raw...))
	changed := 0
	for i, v := range values {
		if want := "--value=" + v; got[i] != want {
			t.Errorf("value %q: the kubelet passes %q to the program, want %q", v, got[i], want)
		}
		if got[len(values)+i] != "--value="+v {
			changed++
		}
	}
	if changed == 0 {
		t.Errorf("no value put in without escaping was changed by the kubelet's expansion: the check cannot tell")
	}
	t.Logf("%d values, %d of them changed by the kubelet when not escaped", len(values), changed)

	// KubeletExpand, which shows an approver what a program will get, does what the kubelet does.
	for i, in := range append(escaped, raw...) {
		if mine := KubeletExpand(in, vars); mine != got[i] {
			t.Errorf("KubeletExpand(%q) = %q, the kubelet gives %q", in, mine, got[i])
		}
	}

	// The author's own text keeps the kubelet's rule: $(HOME) is expanded, $$ is one $.
	if got := kubeletExpand(t, vars, []string{"$(HOME)/cache $$"}); got[0] != "/home/step/cache $" {
		t.Errorf("the author's text expanded to %q", got[0])
	}
}
