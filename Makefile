# Custody developer commands. `make help` lists them.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT := $(BIN)/golangci-lint

# The CI machine has two cores: keep builds and test binaries to two at a time.
GO_TEST_P ?= 2
GO_TEST_TIMEOUT ?= 30m
GO_TEST_FLAGS ?=

# envtest and the test substrate find kube-apiserver, etcd and kubectl here.
export KUBEBUILDER_ASSETS := $(BIN)

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: tools
tools: ## Build (or reuse from the cache) every pinned binary into bin/.
	hack/tools.sh

.PHONY: controller-gen
controller-gen:
	hack/tools.sh controller-gen

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC into config/ from the API and controller markers.
	$(CONTROLLER_GEN) rbac:roleName=manager crd webhook paths="./api/..." paths="./controllers/..." paths="./internal/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	@# The step-pod guards apply only in namespaces that opt in (the marker cannot say so).
	sed -i 's#^  name: step\(pods\|podcreation\|jobcreation\|tokens\|tokensecrets\|names\).custody.dev$$#&\n  namespaceSelector:\n    matchLabels:\n      custody.dev/protect-step-pods: "true"#' \
		config/webhook/manifests.yaml
	test "$$(grep -c 'custody.dev/protect-step-pods: "true"' config/webhook/manifests.yaml)" = 6
	@# Kubelets' token requests (every pod's token) never wait for Custody's webhook.
	sed -i "s#^  name: steptokens.custody.dev\$$#&\n  matchConditions:\n  - expression: \"!('system:nodes' in request.userInfo.groups)\"\n    name: not-a-kubelet#" \
		config/webhook/manifests.yaml
	test "$$(grep -c 'name: not-a-kubelet' config/webhook/manifests.yaml)" = 1
	@# Only ServiceAccount token Secrets are sent to the token-Secret guard.
	sed -i "s#^  name: steptokensecrets.custody.dev\$$#&\n  matchConditions:\n  - expression: \"object != null \&\& object.type == 'kubernetes.io/service-account-token'\"\n    name: service-account-token#" \
		config/webhook/manifests.yaml
	test "$$(grep -c 'name: service-account-token$$' config/webhook/manifests.yaml)" = 1
	@# Only Secrets and RoleBindings named as attempts' copies and bindings are sent to the name guard.
	sed -i "s#^  name: stepnames.custody.dev\$$#&\n  matchConditions:\n  - expression: \"object.metadata.name.matches('-g[0-9a-f]{6}\$$')\"\n    name: named-like-an-attempts#" \
		config/webhook/manifests.yaml
	test "$$(grep -c 'name: named-like-an-attempts$$' config/webhook/manifests.yaml)" = 1
	@# The chart renders its CRDs, the manager's RBAC and the webhook configurations from copies of these.
	rm -rf charts/custody/files
	mkdir -p charts/custody/files/crds charts/custody/files/rbac/people charts/custody/files/webhook
	cp config/crd/bases/*.yaml charts/custody/files/crds/
	cp config/rbac/role.yaml charts/custody/files/rbac/role.yaml
	cp config/webhook/manifests.yaml charts/custody/files/webhook/manifests.yaml
	for r in workflow_editor workflow_viewer credentialgrant_viewer credentialgrant_editor credentialgrant_user spiffe_issuer; do \
		cp config/rbac/$${r}_role.yaml charts/custody/files/rbac/people/; done

.PHONY: generate
generate: controller-gen ## Generate deepcopy functions in api/.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the module.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint with .golangci.yml.
	hack/tools.sh golangci-lint
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: ## Regenerate everything and fail if the tree changed (or is not tidy).
	hack/verify.sh

##@ Test

.PHONY: test
test: tools ## Build the pinned binaries if needed, then run every test but the e2e suites (make e2e).
	go test -p $(GO_TEST_P) -timeout $(GO_TEST_TIMEOUT) $(GO_TEST_FLAGS) $$(go list ./... | grep -v /test/e2e)

.PHONY: e2e
e2e: tools ## End-to-end suites on a local cluster with SPIRE: the diamond, and the fault matrix (controller SIGKILLs, SPIRE restart, ...).
	CUSTODY_E2E_REPORT=$(BIN)/e2e-report.md go test -count=1 -timeout $(GO_TEST_TIMEOUT) $(GO_TEST_FLAGS) -v ./test/e2e/... 2>&1 | \
		grep -E '^(=== RUN|--- |PASS|FAIL|ok |  race: )|_test.go:'

.PHONY: bench
bench: tools ## Measure throughput on a local cluster: BENCH_WORKFLOWS x BENCH_STEPS (200 x 3) vs bare Jobs.
	CUSTODY_BENCH=1 BENCH_OUT=$(BIN)/bench-results.md go test -timeout 90m -count=1 -v -run "TestBenchmark$$|TestBenchmarkRequestCosts|TestBenchmarkIdentity" ./test/bench/
	@echo "results: $(BIN)/bench-results.md"

##@ Build

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-custody.
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o $(BIN)/kubectl-custody ./cmd/kubectl-custody

.PHONY: install-plugin
install-plugin: plugin ## Put kubectl-custody on PATH (a link in GOPATH/bin).
	mkdir -p $$(go env GOPATH)/bin
	ln -sf $(BIN)/kubectl-custody $$(go env GOPATH)/bin/kubectl-custody
	@echo "kubectl custody --help"

.PHONY: image
IMG ?= custody-controller:latest
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
image: ## Build the manager image from the Dockerfile (needs docker or podman).
	@if [ -z "$(CONTAINER_TOOL)" ]; then \
		echo "make image: no container engine (docker or podman) on this machine; build the image where one exists" >&2; exit 1; fi
	@if ! $(CONTAINER_TOOL) info >/dev/null 2>&1; then \
		echo "make image: $(CONTAINER_TOOL) is installed but no engine answers it; build the image where one runs" >&2; exit 1; fi
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: build
build: ## Build the manager binary into bin/manager.
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/manager .

##@ Sandbox

SANDBOX := $(BIN)/sandbox

.PHONY: sandbox
sandbox: tools ## Run Custody on an embedded local cluster with the sample workflows; Ctrl-C stops it.
	go build -o $(BIN)/sandbox-runner ./hack/sandbox
	$(BIN)/sandbox-runner -dir $(SANDBOX)

.PHONY: sandbox-up
sandbox-up: tools ## Start the sandbox in the background; prints its kubeconfig when ready.
	go build -o $(BIN)/sandbox-runner ./hack/sandbox
	mkdir -p $(BIN)/sandbox-logs
	nohup $(BIN)/sandbox-runner -up -dir $(SANDBOX) > $(BIN)/sandbox-logs/sandbox.log 2>&1 &
	@for i in $$(seq 1 300); do \
		if [ -f $(SANDBOX)/ready ]; then echo "sandbox ready: export KUBECONFIG=$$(cat $(SANDBOX)/ready)"; \
			echo "SPIRE admin socket: $(SANDBOX)/spire/server.sock; progress: $(BIN)/sandbox-logs/sandbox.log"; exit 0; fi; \
		if ! pgrep -f "$(BIN)/sandbox-runner" >/dev/null; then cat $(BIN)/sandbox-logs/sandbox.log; exit 1; fi; \
		sleep 1; done; echo "sandbox not ready after 300s; see $(BIN)/sandbox-logs/sandbox.log"; exit 1

.PHONY: sandbox-down
sandbox-down: ## Stop the background sandbox and remove its state.
	@if [ -f $(SANDBOX)/pid ]; then pid=$$(cat $(SANDBOX)/pid); kill -INT $$pid 2>/dev/null || true; \
		for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; fi
	rm -rf $(SANDBOX)
