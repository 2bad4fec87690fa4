#!/usr/bin/env bash
# Regenerates everything generated (deepcopy, CRDs, RBAC), formats, tidies every module, and fails
# if that changed the tree: generated files must be committed in sync with their sources.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory generate manifests
gofmt -s -w $(git ls-files '*.go')
go mod tidy
for mod in hack/tools/*/go.mod; do
  (cd "$(dirname "$mod")" && go mod tidy)
done

if ! git diff --exit-code --stat; then
  echo "verify: the files above changed after regeneration; run 'make generate manifests fmt' and 'go mod tidy', then commit" >&2
  exit 1
fi
untracked=$(git ls-files --others --exclude-standard)
if [[ -n "$untracked" ]]; then
  echo "verify: regeneration produced untracked files:" >&2
  echo "$untracked" >&2
  exit 1
fi
echo "verify: generated files, formatting and go.mod files are in sync"
