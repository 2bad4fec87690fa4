package workflow

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/testenv"
)

// TestCredentials_noValueAnywhere runs a workflow that holds every kind of credential (a role, a
// Secret copy that is rotated mid-step, SVID properties), then looks for the Secret's values in
// everything Custody writes or says: Events, the manager's log (audit lines included, at the most
// verbose level), the Workflow and grant objects with their status and conditions, and every
// metric. None may contain a value.
func TestCredentials_noValueAnywhere(t *testing.T) {
	t.Parallel()
	logs := &testenv.SyncBuffer{}
	e := setupIdentityWith(t, zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapDebug)))
	configMapReader(t, e.ns)
	values := []string{"tok-9f2c41d7e5a8b3", "usr-77ab12cd34ef56", "tok-rotated-3e8d1c0b"}
	src := secret(t, e.ns, "erp-api", true, map[string]string{"token": values[0], "user": values[1]})
	grant(t, e.ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: scan, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token, user], maxAge: 1h}}`)
	grant(t, e.ns, `
metadata: {name: role}
spec:
  subjects: [{workflowName: scan, steps: [post]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader, audience: erp}}`)
	grant(t, e.ns, `
metadata: {name: svid}
spec:
  subjects: [{workflowName: scan, steps: [post]}]
  credential: {spiffe: {dnsNames: [erp.example.org], audiences: [erp]}}`)
	wf := apply(t, e.ns, `
metadata: {name: scan}
spec:
  steps:
  - {name: post, image: example.com/w:1, credentials: [erp, role, svid]}`)
	job := jobOf(t, wf, "post", 1)
	pod := startPod(t, job)
	waitIdentity(t, wf, "post", custodyv1alpha1.IdentityRegistered)
	eventually(t, "source rotation", func() error {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(src), cur); err != nil {
			return err
		}
		cur.Data["token"] = []byte(values[2])
		return env.Client.Update(ctxT(t), cur)
	})
	eventually(t, "the copy rotated", func() error {
		if eventReasons(t, wf)[custodyv1alpha1.ReasonCredentialRotated] == 0 {
			return errorf("not yet")
		}
		return nil
	})
	endPod(t, pod, 0)
	finishJob(t, job, true, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	e.waitEntries(t)
	if got := stepOf(get(t, wf), "post").Credentials; len(got) != 3 {
		t.Fatalf("credentials %+v, want three records", got)
	}

	var corpus strings.Builder
	var events eventsv1.EventList
	if err := env.Client.List(ctxT(t), &events, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []any{events.Items, get(t, wf), grants(t, e.ns)} {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		corpus.Write(b)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&corpus, f); err != nil {
			t.Fatal(err)
		}
	}
	corpus.WriteString(logs.String())
	if !strings.Contains(logs.String(), `"action": "issue"`) && !strings.Contains(logs.String(), "Credential issue") {
		t.Fatal("the captured log has no audit line: the scan would prove nothing")
	}
	for _, v := range values {
		if strings.Contains(corpus.String(), v) {
			t.Errorf("a credential value appears in what Custody wrote or said")
		}
	}
	t.Logf("scanned %d bytes of Events, objects, metrics and log for %d values", corpus.Len(), len(values))
}

func grants(t *testing.T, ns string) []custodyv1alpha1.CredentialGrant {
	var list custodyv1alpha1.CredentialGrantList
	if err := env.Client.List(ctxT(t), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// zapDebug is the most verbose level controller-runtime logs at (V(1) and up are debug).
const zapDebug = zapcore.Level(-10)
