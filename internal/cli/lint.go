package cli

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custody-dev/custody/internal/lint"
)

// lintCommand is `kubectl custody lint PATH...`: the checks of the API server and admission,
// without a cluster (internal/lint), for a GitOps repository's CI.
func (o *Options) lintCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "lint PATH...",
		Short: "Check Workflow, WorkflowTemplate, CronWorkflow and CredentialGrant manifests without a cluster",
		Long: "lint checks the Custody objects of YAML or JSON manifests (files, directories searched for *.yaml, *.yml " +
			"and *.json, or - for standard input) as the API server and Custody's admission would when they are applied: " +
			"the CRDs' schemas and validation rules, then cycles, references, expressions, and a template run's parameters " +
			"when the template is among the manifests. Other kinds are skipped. What only the cluster knows (grants and who " +
			"may use them, templates elsewhere, approvers) is not checked; the command needs no kubeconfig. It exits " +
			"non-zero when anything would be refused.",
		Example: "  kubectl custody lint config/samples\n  kustomize build overlays/prod | kubectl custody lint -",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []lint.Document
			for _, arg := range args {
				d, err := o.readManifests(arg)
				if err != nil {
					return err
				}
				docs = append(docs, d...)
			}
			l, err := lint.New()
			if err != nil {
				return err
			}
			res := l.Lint(cmd.Context(), docs)
			if err := o.print(res, func(w io.Writer) error {
				for _, p := range res.Problems {
					_, _ = fmt.Fprintln(w, p)
				}
				_, _ = fmt.Fprintf(w, "%d Custody objects checked: %d errors, %d warnings\n", res.Checked, res.Errors(),
					len(res.Problems)-res.Errors())
				return nil
			}); err != nil {
				return err
			}
			if n := res.Errors(); n > 0 {
				return fmt.Errorf("%d problems: the API server or admission would refuse these manifests", n)
			}
			return nil
		},
	}
}

// readManifests reads the documents of a file, of every manifest under a directory, or of
// standard input (-).
func (o *Options) readManifests(path string) ([]lint.Document, error) {
	if path == "-" {
		return lint.Split("<stdin>", o.io.In)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return readManifestFile(path)
	}
	var docs []lint.Document
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch ext := strings.ToLower(filepath.Ext(p)); {
		case d.IsDir() && p != path && strings.HasPrefix(d.Name(), "."):
			return filepath.SkipDir // .git and the like
		case d.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json"):
			return nil
		}
		more, err := readManifestFile(p)
		docs = append(docs, more...)
		return err
	})
	return docs, err
}

func readManifestFile(path string) ([]lint.Document, error) {
	f, err := os.Open(path) //nolint:gosec // a file the user named
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return lint.Split(path, f)
}
