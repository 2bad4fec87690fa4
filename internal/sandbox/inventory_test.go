package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/cli"
)

// inventory runs `kubectl custody inventory -n sandbox -o json` against the sandbox.
func (sb *Sandbox) inventory(ctx context.Context) (*cli.Inventory, error) {
	var out bytes.Buffer
	cmd := cli.NewCommandWithClient(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out},
		sb.Cluster.Client, Namespace, time.Now)
	cmd.SetArgs([]string{"inventory", "-o", "json"})
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmdErr := cmd.ExecuteContext(ctx)
	inv := &cli.Inventory{}
	if err := json.Unmarshal(out.Bytes(), inv); err != nil {
		return nil, fmt.Errorf("inventory output %q: %w", out.String(), errors.Join(err, cmdErr))
	}
	return inv, nil
}

// issuedObjects are the RoleBindings and Secret copies that exist for step attempts, as
// "RoleBinding/<name>" and "Secret/<name>" (the inventory's resource form).
func (sb *Sandbox) issuedObjects(ctx context.Context) ([]string, error) {
	var rbs rbacv1.RoleBindingList
	var secrets corev1.SecretList
	if err := sb.Cluster.Client.List(ctx, &rbs, client.InNamespace(Namespace), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
		return nil, err
	}
	if err := sb.Cluster.Client.List(ctx, &secrets, client.InNamespace(Namespace), client.HasLabels{custodyv1alpha1.LabelWorkflow}); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rbs.Items {
		out = append(out, "RoleBinding/"+r.Name)
	}
	for _, s := range secrets.Items {
		out = append(out, "Secret/"+s.Name)
	}
	sort.Strings(out)
	return out, nil
}

// watchInventory samples the inventory while the samples run and reports whether it ever saw
// live issuances that were exactly the RoleBindings and Secret copies existing at that moment
// (issuing creates the object a moment before status records it, revoking deletes it a moment
// before; at a settled moment both agree), and any standing credential it saw.
func (sb *Sandbox) watchInventory(ctx context.Context) (matched int, standing []string, err error) {
	defer func() {
		if ctx.Err() != nil {
			err = nil // stopped: the samples finished
		}
	}()
	for ctx.Err() == nil {
		inv, err := sb.inventory(ctx)
		if err != nil {
			return matched, standing, err
		}
		objs, err := sb.issuedObjects(ctx)
		if err != nil {
			return matched, standing, err
		}
		again, err := sb.inventory(ctx)
		if err != nil {
			return matched, standing, err
		}
		var listed []string
		for _, i := range inv.Issuances {
			if i.Kind != custodyv1alpha1.CredentialKindSPIFFE {
				listed = append(listed, i.Resource)
			}
		}
		sort.Strings(listed)
		same := len(inv.Issuances) == len(again.Issuances)
		if same && len(listed) > 0 && slices.Equal(listed, objs) {
			matched++
		}
		for _, s := range again.Standing {
			standing = append(standing, fmt.Sprintf("%s/%s attempt %d %s", s.Workflow, s.Step, s.Attempt, s.Grant))
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	return matched, standing, nil
}
