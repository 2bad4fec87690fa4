package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/custody-dev/custody/internal/testenv"
)

// TestGrafanaDashboard: config/grafana/custody.json is a dashboard whose every query names a
// metric the manager exports (a renamed metric must not leave an empty panel behind).
func TestGrafanaDashboard(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "grafana", "custody.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if len(dash.Panels) < 8 {
		t.Errorf("%d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range testenv.UnknownMetrics(t, tg.Expr) {
				t.Errorf("panel %q queries %s, which the manager does not export", p.Title, name)
			}
		}
	}
}
