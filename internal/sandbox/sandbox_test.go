package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// sampledInventory is what watchInventory saw.
type sampledInventory struct {
	matched  int
	standing []string
	err      error
}

func (s sampledInventory) check(t *testing.T) {
	t.Helper()
	if s.err != nil {
		t.Errorf("inventory during the run: %v", s.err)
	}
	if s.matched == 0 {
		t.Error("inventory never listed exactly the RoleBindings and Secret copies that existed while the samples ran")
	}
	if len(s.standing) > 0 {
		t.Errorf("inventory saw credentials held by nothing running during the run: %v", s.standing)
	}
}

// TestSandboxRunsTheSamples is `make sandbox` without the waiting: every sample in config/samples
// succeeds on the local cluster with SPIRE, each step with its own identity, registered and
// revoked, and nothing issued is left behind.
func TestSandboxRunsTheSamples(t *testing.T) {
	dir, err := os.MkdirTemp("", "sbx")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sb, err := Start(ctx, dir, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer func() { _ = sb.Stop() }()
	if err := sb.ApplySamples(ctx); err != nil {
		t.Fatalf("%v\n%s", err, sb.ManagerLogTail())
	}
	checkPersonsGrant := addPersonsGrant(ctx, t, sb, &out)
	// kubectl custody inventory, sampled while the samples run.
	invCtx, stopInv := context.WithCancel(ctx)
	invDone := make(chan sampledInventory, 1)
	go func() {
		m, st, err := sb.watchInventory(invCtx)
		invDone <- sampledInventory{m, st, err}
	}()
	wfs, err := sb.Watch(ctx)
	stopInv()
	inv := <-invDone
	inv.check(t)

	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), sb.ManagerLogTail())
	}
	checkPersonsGrant()
	if len(wfs) < 6 {
		t.Fatalf("%d sample workflows ran, want the six of config/samples", len(wfs))
	}
	// Each step holds exactly the grants it asks for: the disabling step alone holds the
	// identity provider's token, and only because the risk crossed the threshold.
	want := map[string]string{"respond-alert-1042/disable-account": "idp-admin", "answer-customer-88/retrieve-customer": "crm-read",
		"answer-customer-88/generate-response": "model-gateway", "answer-customer-88/open-ticket": "ticket-write",
		"provision-team-blue/create-resources": "provision-resources", "provision-team-blue/assign-roles": "assign-access",
		"pay-invoice-4711/post-payment": "erp-payments", "db-backup-before-migration/snapshot": "backup-db-password"}
	for _, wf := range wfs {
		for _, st := range wf.Status.Steps {
			held := make([]string, 0, len(st.Credentials))
			for _, c := range st.Credentials {
				held = append(held, c.Grant)
			}
			if got := strings.Join(held, ","); got != want[wf.Name+"/"+st.Name] {
				t.Errorf("%s/%s held %q, want %q", wf.Name, st.Name, got, want[wf.Name+"/"+st.Name])
			}
		}
	}
	checkTemplateRun(t, wfs)
	checkForEach(t, wfs)
	checkAllowedFailure(t, wfs)
	for _, wf := range wfs {
		if wf.Status.Phase != custodyv1alpha1.WorkflowSucceeded {
			t.Errorf("sample %s ended %s:\n%s", wf.Name, wf.Status.Phase, strings.Join(describe(&wf), "\n"))
		}
		for _, st := range wf.Status.Steps {
			if st.Phase == custodyv1alpha1.StepSkipped {
				continue
			}
			if st.Identity == nil || st.Identity.State != custodyv1alpha1.IdentityRevoked || st.SPIFFEID == "" {
				t.Errorf("sample %s step %s: identity %+v", wf.Name, st.Name, st.Identity)
			}
			for _, c := range st.Credentials {
				if c.RevokedAt == nil {
					t.Errorf("sample %s step %s still holds %s", wf.Name, st.Name, c.Grant)
				}
			}
		}
	}
	var left string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if left, err = sb.Leftovers(ctx); err != nil {
			t.Fatal(err)
		}
		if left == "0 step ServiceAccounts, 0 Secret copies, SPIRE: 0 registration entries" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if left != "0 step ServiceAccounts, 0 Secret copies, SPIRE: 0 registration entries" {
		t.Errorf("left behind: %s", left)
	}
	if !strings.Contains(out.String(), "approved step post-payment") {
		t.Errorf("the finance sample's approval gate was not exercised:\n%s", out.String())
	}
	checkAdmission(ctx, t, sb, wfs)

	// Afterwards: nothing is held, nothing standing.
	after, err := sb.inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Issuances) != 0 || len(after.Standing) != 0 || len(after.Grants) != 8 {
		t.Errorf("inventory after the samples: %d live, %d standing, %d grants (want 0, 0, 8)", len(after.Issuances), len(after.Standing), len(after.Grants))
	}
	checkPrintedColumns(ctx, t, sb)
	t.Logf("inventory matched the issued objects at %d samples during the run", inv.matched)
	if sb.AdmissionDropped > 0 {
		t.Logf("admission dropped the connection %d times while the samples were applied (created again):\n%s", sb.AdmissionDropped, sb.ManagerLogTail())
	}
}

// addPersonsGrant adds to the sandbox a grant as a person trying it out might, which the sandbox's
// approver may not approve (it names bob). The check it returns, once Watch returned, asserts that
// the sandbox said so and went on, and deletes the grant.
func addPersonsGrant(ctx context.Context, t *testing.T, sb *Sandbox, out *bytes.Buffer) (check func()) {
	t.Helper()
	bobs := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "bobs-to-approve", Namespace: Namespace},
		Spec: custodyv1alpha1.CredentialGrantSpec{
			Subjects:   []custodyv1alpha1.GrantSubject{{WorkflowName: "someday", Steps: []string{"read"}}},
			Credential: custodyv1alpha1.Credential{Secret: &custodyv1alpha1.SecretCredential{Name: "crm-api", Keys: []string{"token"}}},
			Approval:   &custodyv1alpha1.GrantApproval{Required: true, Approvers: &custodyv1alpha1.Approvers{Users: []string{"bob"}}}}}
	if err := sb.Cluster.Client.Create(ctx, bobs); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if !strings.Contains(out.String(), "not approving grant bobs-to-approve (not a sample; approve it yourself)") {
			t.Errorf("the sandbox did not say it may not approve a grant a person added:\n%s", out.String())
		}
		// A grant that never issued prints 0 live issuances, not nothing.
		rows, err := printedTable(ctx, sb, "credentialgrants")
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			if row["Name"] == bobs.Name && row["Active"] != float64(0) {
				t.Errorf("kubectl get credentialgrants: %s printed Active %v (%T), want 0", bobs.Name, row["Active"], row["Active"])
			}
		}
		if err := sb.Cluster.Client.Delete(ctx, bobs); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPrintedColumns: what `kubectl get` prints for the finished samples, from the API server's
// own table (the CRDs' printer columns): every workflow Succeeded with all its steps ended, and
// every grant with 0 live issuances, printed as 0 rather than left blank.
func checkPrintedColumns(ctx context.Context, t *testing.T, sb *Sandbox) {
	t.Helper()
	want := map[string]map[string]func(any) bool{
		"workflows": {
			"Phase": func(v any) bool { return v == string(custodyv1alpha1.WorkflowSucceeded) },
			"Steps": func(v any) bool {
				ended, all, ok := strings.Cut(fmt.Sprint(v), "/")
				return ok && ended == all && ended != "0"
			},
		},
		"credentialgrants": {"Active": func(v any) bool { return v == float64(0) }},
	}
	// The grants' status follows the last revocation shortly after.
	var problems []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		problems = nil
		for resource, columns := range want {
			rows, err := printedTable(ctx, sb, resource)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < 6 {
				problems = append(problems, fmt.Sprintf("kubectl get %s printed %d rows, want every sample's", resource, len(rows)))
			}
			for _, row := range rows {
				for column, ok := range columns {
					if !ok(row[column]) {
						problems = append(problems, fmt.Sprintf("kubectl get %s: %s printed %s %v (%T)",
							resource, row["Name"], column, row[column], row[column]))
					}
				}
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// printedTable gets the sandbox namespace's objects of a custody.dev resource as kubectl does, as
// a Table the API server builds from the CRD's printer columns, and returns each row's cells by
// column name.
func printedTable(ctx context.Context, sb *Sandbox, resource string) ([]map[string]any, error) {
	cs, err := kubernetes.NewForConfig(sb.Cluster.RestConfig())
	if err != nil {
		return nil, err
	}
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis/custody.dev/v1alpha1/namespaces", Namespace, resource).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s as a table: %w", resource, err)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		return nil, fmt.Errorf("%s as a table: %w", resource, err)
	}
	rows := make([]map[string]any, 0, len(table.Rows))
	for _, r := range table.Rows {
		row := map[string]any{}
		for i, c := range table.ColumnDefinitions {
			if i < len(r.Cells) {
				row[c.Name] = r.Cells[i]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// checkAdmission: admission ran, so every sample records its creator, and the approvals name the
// approver it authenticated, not something the sandbox wrote.
func checkAdmission(ctx context.Context, t *testing.T, sb *Sandbox, wfs []custodyv1alpha1.Workflow) {
	t.Helper()
	for _, wf := range wfs {
		if wf.Annotations[custodyv1alpha1.AnnotationCreatedBy] == "" {
			t.Errorf("sample %s has no creator record", wf.Name)
		}
		for _, st := range wf.Status.Steps {
			if st.Approval != nil && st.Approval.ApprovedBy != Approver {
				t.Errorf("sample %s step %s approved by %q, want %s as stamped by admission", wf.Name, st.Name, st.Approval.ApprovedBy, Approver)
			}
		}
	}
	g := &custodyv1alpha1.CredentialGrant{}
	if err := sb.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: "erp-payments"}, g); err != nil {
		t.Fatal(err)
	}
	if g.Status.Approval == nil || g.Status.Approval.ApprovedBy != Approver {
		t.Errorf("grant erp-payments approval %+v, want %s as stamped by admission", g.Status.Approval, Approver)
	}
}

// checkAllowedFailure: the diamond's advisory coverage step failed (KWOK failed its pod, as the
// sample asks) and the workflow went on to succeed.
func checkAllowedFailure(t *testing.T, wfs []custodyv1alpha1.Workflow) {
	t.Helper()
	for _, wf := range wfs {
		if wf.Name != "build-diamond" {
			continue
		}
		for _, st := range wf.Status.Steps {
			if st.Name == "coverage" && (st.Phase != custodyv1alpha1.StepFailed || !strings.Contains(st.Message, "exited with code 1") ||
				!strings.HasPrefix(st.Message, "Failure allowed (onFailure: Continue)")) {
				t.Errorf("build-diamond's coverage: %s (%s) %q, want Failed with exit code 1, allowed", st.Phase, st.Reason, st.Message)
			}
		}
		return
	}
	t.Error("no build-diamond among the samples")
}

// checkForEach: the diamond's test step ran once per suite, as two steps with identities of their
// own.
func checkForEach(t *testing.T, wfs []custodyv1alpha1.Workflow) {
	t.Helper()
	for _, wf := range wfs {
		if wf.Name != "build-diamond" {
			continue
		}
		ids := map[string]string{}
		for _, st := range wf.Status.Steps {
			ids[st.Name] = st.SPIFFEID
		}
		unit, integration := ids["test-unit"], ids["test-integration"]
		if len(ids) != 6 || unit == "" || integration == "" || unit == integration || !strings.Contains(unit, "/step/test-unit/") {
			t.Errorf("build-diamond's steps and SPIFFE IDs: %v; want test to run as test-unit and test-integration", ids)
		}
	}
}

// checkTemplateRun checks the run of the db-backup template: resolved from it and labelled, its
// finally steps ran after the others (the page only on failure, so skipped), its result computed.
func checkTemplateRun(t *testing.T, wfs []custodyv1alpha1.Workflow) {
	t.Helper()
	for _, wf := range wfs {
		if wf.Name != "db-backup-before-migration" {
			continue
		}
		if wf.Status.Template == nil || wf.Status.Template.Name != "db-backup" || wf.Labels[custodyv1alpha1.LabelTemplate] != "db-backup" {
			t.Errorf("%s: template %+v, labels %v; want resolved from db-backup and labelled", wf.Name, wf.Status.Template, wf.Labels)
		}
		phases := map[string]string{}
		for _, st := range wf.Status.Steps {
			phases[st.Name] = string(st.Phase) + "/" + st.Reason
		}
		if phases["page-on-failure"] != "Skipped/WhenFalse" || !strings.HasPrefix(phases["remove-scratch"], "Succeeded") {
			t.Errorf("%s finally steps: %v", wf.Name, phases)
		}
		// The template's result, from the snapshot step's result on the sandbox's KWOK node.
		if got := wf.Status.Results; len(got) != 1 || got[0].Name != "backup" || got[0].Value != "s3://backups/orders/nightly.dump" {
			t.Errorf("%s status.results = %+v, want backup: s3://backups/orders/nightly.dump", wf.Name, got)
		}
	}
}
