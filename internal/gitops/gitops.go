// Package gitops evaluates the Argo CD health checks Custody ships (config/gitops/argocd) with
// gopher-lua, the Lua interpreter Argo CD itself embeds, and says whether they agree with kstatus
// (what Flux and `kubectl wait`-style tools read). Tests use it against real objects.
package gitops

import (
	"fmt"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/custody-dev/custody/internal/testenv"
)

// Argo CD health statuses the checks return.
const (
	Healthy     = "Healthy"
	Progressing = "Progressing"
	Degraded    = "Degraded"
	Suspended   = "Suspended"
)

// Health is what an Argo CD health check returned.
type Health struct {
	Status  string
	Message string
}

// ScriptPath is the health check of a custody.dev kind, in Argo CD's resource_customizations
// layout.
func ScriptPath(kind string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "gitops", "argocd", "custody.dev", kind, "health.lua"), nil
}

// ArgoHealth runs the health check of obj's kind on obj, as Argo CD does: the object is the
// global `obj`, and the chunk returns a table with status and message.
func ArgoHealth(obj *unstructured.Unstructured) (Health, error) {
	path, err := ScriptPath(obj.GetKind())
	if err != nil {
		return Health{}, err
	}
	script, err := os.ReadFile(path) //nolint:gosec // the repository's own script
	if err != nil {
		return Health{}, err
	}
	return Evaluate(string(script), obj.Object)
}

// Evaluate runs a health script on an object given as unstructured content.
func Evaluate(script string, obj map[string]any) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return Health{}, fmt.Errorf("health script: %w", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("health script returned %s, not a table", L.Get(-1).Type())
	}
	h := Health{Status: ret.RawGetString("status").String(), Message: ret.RawGetString("message").String()}
	if h.Message == "nil" {
		h.Message = ""
	}
	switch h.Status {
	case Healthy, Progressing, Degraded, Suspended:
		return h, nil
	}
	return h, fmt.Errorf("health script returned status %q", h.Status)
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}

// Kstatus computes kstatus for the object.
func Kstatus(obj *unstructured.Unstructured) (status.Status, error) {
	res, err := status.Compute(obj)
	if err != nil {
		return "", err
	}
	return res.Status, nil
}

// Agree says whether an Argo CD health and a kstatus status say the same: Healthy is Current,
// Degraded is Failed, Progressing and Suspended are InProgress (kstatus has no "waiting for a
// person").
func Agree(h Health, s status.Status) bool {
	switch h.Status {
	case Healthy:
		return s == status.CurrentStatus
	case Degraded:
		return s == status.FailedStatus
	case Progressing, Suspended:
		return s == status.InProgressStatus
	}
	return false
}
