#!/usr/bin/env bash
# Builds the pinned binaries that Custody's tests and developer commands use, from the Go module
# proxy, into bin/. Nothing is downloaded as a release binary or an image.
#
#   hack/tools.sh            build (or reuse) every tool group
#   hack/tools.sh etcd kwok  only these groups
#   hack/tools.sh --list     print the groups and their binaries
#   hack/tools.sh --prune    remove cached builds that this checkout's bin/ does not use
#
# Each group is a Go module under hack/tools/<group> whose go.mod and go.sum pin every dependency.
# A build lands in a per-user cache keyed by the group, its pinned version and a hash of its
# go.mod/go.sum (like setup-envtest does), and bin/<binary> is a symlink into it. A fresh clone on a
# machine that built the same pins before therefore needs no compiling at all; a changed pin gets a
# new key and is built once.
#
# Environment:
#   CUSTODY_TOOLS_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/custody/tools)
#   CUSTODY_BUILD_P      go build -p (default 2: the CI machine has two cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/bin"
CACHE="${CUSTODY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/custody/tools}"
BUILD_P="${CUSTODY_BUILD_P:-2}"

K8S_VERSION=v1.37.2

# group | pinned version | cgo | packages (space separated; binary name = last path element,
# except for etcd whose module root is the main package)
GROUPS_TABLE="
kubernetes|${K8S_VERSION}|0|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
etcd|v3.7.3|0|go.etcd.io/etcd/server/v3
kwok|v0.8.0|0|sigs.k8s.io/kwok/cmd/kwok
spire|v1.13.3|1|github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
helm|v3.22.0|0|helm.sh/helm/v3/cmd/helm
controller-gen|v0.23.0|0|sigs.k8s.io/controller-tools/cmd/controller-gen
golangci-lint|v2.15.0|0|github.com/golangci/golangci-lint/v2/cmd/golangci-lint
"

# KWOK's own Stage manifests (from the kwok module, at the pinned version) that make fake nodes
# Ready and keep them so, move pods to Running, complete pods owned by Jobs, and finish deleting
# pods. hack/tools.sh concatenates them into bin/kwok-stages.yaml for `kwok --config`.
KWOK_STAGES="node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml"
# KWOK's Logs CRD (the same module): with `kwok --enable-crds=Logs` a Logs object names the file
# KWOK serves as one pod's container log, so tests give every pod a log of its own.
KWOK_CRDS="kwok.x-k8s.io_logs.yaml"

log() { printf '[tools] %s\n' "$*" >&2; }

# extras_for prints the non-binary files a group installs next to its binaries.
extras_for() {
  case "$1" in
    kwok) echo kwok-stages.yaml kwok-crds.yaml ;;
  esac
}

# build_extras writes a group's extra files into dir.
build_extras() {
  local group=$1 moddir=$2 dir=$3
  case "${group}" in
    kwok)
      local src f
      src=$(cd "${moddir}" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
      for f in ${KWOK_STAGES}; do
        echo "---"
        cat "${src}/kustomize/stage/${f}"
      done >"${dir}/kwok-stages.yaml"
      for f in ${KWOK_CRDS}; do
        echo "---"
        cat "${src}/kustomize/crd/bases/${f}"
      done >"${dir}/kwok-crds.yaml"
      ;;
  esac
}

binary_name() {
  case "$1" in
    go.etcd.io/etcd/server/v3) echo etcd ;;
    *) basename "$1" ;;
  esac
}

ldflags_for() {
  local group=$1 version=$2
  case "$group" in
    kubernetes)
      local minor=${version#v1.}; minor=${minor%%.*}
      local flags="" pkg
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
        flags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
      done
      echo "-s -w${flags}"
      ;;
    spire) echo "-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=${version#v}" ;;
    helm) echo "-s -w -X helm.sh/helm/v3/internal/version.version=${version} -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) echo "-s -w" ;;
  esac
}

build_group() {
  local group=$1 version=$2 cgo=$3 pkgs=$4
  local moddir="${ROOT}/hack/tools/${group}"
  local hash
  # The key covers everything that decides the output: pins, Go version, platform and recipe.
  hash=$( (cat "${moddir}/go.mod" "${moddir}/go.sum"; go env GOVERSION GOOS GOARCH
    echo "${cgo} ${pkgs} $(ldflags_for "${group}" "${version}") $(extras_for "${group}")"
    if [[ "${group}" == kwok ]]; then echo "${KWOK_STAGES} ${KWOK_CRDS}"; fi) |
    sha256sum | cut -c1-12)
  local dest="${CACHE}/${group}-${version}-${hash}"

  if [[ ! -f "${dest}/.complete" ]]; then
    log "building ${group} ${version} (cgo=${cgo}) into ${dest}"
    local start=${SECONDS}
    local tmp="${dest}.tmp.$$"
    rm -rf "${tmp}"
    mkdir -p "${tmp}"
    # shellcheck disable=SC2086 # pkgs is a deliberate word list
    (cd "${moddir}" && CGO_ENABLED=${cgo} GOFLAGS=-mod=readonly \
      go build -p "${BUILD_P}" -trimpath -ldflags "$(ldflags_for "${group}" "${version}")" -o "${tmp}/" ${pkgs})
    # go names the binary of go.etcd.io/etcd/server/v3 after its last non-version element.
    if [[ "${group}" == etcd ]]; then mv "${tmp}/server" "${tmp}/etcd"; fi
    build_extras "${group}" "${moddir}" "${tmp}"
    touch "${tmp}/.complete"
    rm -rf "${dest}"
    mv "${tmp}" "${dest}"
    log "built ${group} in $((SECONDS - start))s"
  fi

  mkdir -p "${BIN}"
  local pkg name
  for pkg in ${pkgs}; do
    name=$(binary_name "${pkg}")
    [[ -x "${dest}/${name}" ]] || { log "missing ${dest}/${name}"; return 1; }
    ln -sfn "${dest}/${name}" "${BIN}/${name}"
  done
  for name in $(extras_for "${group}"); do
    ln -sfn "${dest}/${name}" "${BIN}/${name}"
  done
  echo "${group} ${version}" > "${BIN}/.${group}.version"
}

main() {
  local want=("$@")
  if [[ "${1:-}" == "--list" ]]; then
    echo "${GROUPS_TABLE}" | sed '/^$/d' | while IFS='|' read -r g v _ p; do
      printf '%-15s %-10s' "$g" "$v"; for x in $p; do printf ' %s' "$(binary_name "$x")"; done; echo
    done
    return
  fi
  if [[ "${1:-}" == "--prune" ]]; then
    local d used
    used=$(for l in "${BIN}"/*; do [[ -L "$l" ]] && dirname "$(readlink "$l")"; done | sort -u)
    for d in "${CACHE}"/*/; do
      d=${d%/}
      if ! grep -qxF "$d" <<<"${used}"; then
        log "removing ${d}"
        rm -rf "${d}"
      fi
    done
    return
  fi
  mkdir -p "${CACHE}"
  # One build at a time per cache: two checkouts building the same pins would only waste cores.
  exec 9>"${CACHE}/.lock"
  flock 9
  local found=0 g v c p
  while IFS='|' read -r g v c p; do
    [[ -z "$g" ]] && continue
    if ((${#want[@]})); then
      local w match=0
      for w in "${want[@]}"; do [[ "$w" == "$g" ]] && match=1; done
      ((match)) || continue
    fi
    found=$((found + 1))
    build_group "$g" "$v" "$c" "$p"
  done <<<"${GROUPS_TABLE}"
  if ((${#want[@]})) && ((found != ${#want[@]})); then
    log "unknown group in: ${want[*]} (see hack/tools.sh --list)"
    return 2
  fi
}

main "$@"
