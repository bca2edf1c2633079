# OriginStack: the front door. `make run` starts the proxy, `make test` installs what the tests
# need and runs every tier. See README.md.

CARGO ?= cargo
SHELL := /bin/bash

# One build directory for every clone on this machine, beside the cached Kubernetes binaries:
# a fresh clone rebuilds only the workspace's own crates, dependencies stay compiled. Cargo's
# fingerprints (compiler, features, flags, source times) decide what is stale; because they
# do not name the checkout, scripts/build-dir.sh makes a checkout that did not build last
# rebuild the workspace's crates from its own sources, so another clone's artefact is never
# taken for this one's. Set CARGO_TARGET_DIR to build elsewhere.
ORIGINSTACK_CACHE ?= $(HOME)/.cache/originstack
export CARGO_TARGET_DIR ?= $(ORIGINSTACK_CACHE)/target
RELEASE_DIR := $(CARGO_TARGET_DIR)/release
BUILD_DIR_CHECK := $(shell ./scripts/build-dir.sh "$(CARGO_TARGET_DIR)" || echo failed)
ifeq ($(BUILD_DIR_CHECK),failed)
$(error scripts/build-dir.sh could not prepare $(CARGO_TARGET_DIR))
endif

.PHONY: run demo deps test test-unit test-integration test-e2e fuzz fuzz-smoke bench lint fmt build release release-binaries generate k8s-assets-path cluster-up cluster-down clean

## run: build and start the proxy with the in-memory load balancer on the default ports
run:
	$(CARGO) build --release -p originstack-proxy
	@echo
	@echo "OriginStack proxy starting (in-memory load balancer). In another terminal:"
	@echo "  register an origin:  curl -s -X POST http://127.0.0.1:12025/api/v1/srs/register \\"
	@echo "      -d '{\"device_id\":\"o1\",\"ip\":\"127.0.0.1\",\"server\":\"o1\",\"service\":\"s1\",\"pid\":\"1\",\"rtmp\":[\"19350\"],\"http\":[\"8081\"],\"api\":[\"19851\"]}'"
	@echo "  publish a test stream: ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine \\"
	@echo "      -c:v libx264 -preset veryfast -tune zerolatency -c:a aac -f flv rtmp://127.0.0.1:1935/live/test"
	@echo "  play it:             ffplay rtmp://127.0.0.1:1935/live/test   (or http://127.0.0.1:8080/live/test.flv)"
	@echo "  versions:            curl http://127.0.0.1:12025/api/v1/versions"
	@echo
	$(RELEASE_DIR)/originstack-proxy

## demo: a local playground without a cluster: the proxy, three nginx-rtmp origins heartbeating
## to it, ffmpeg publishing a test stream; prints URLs to play; Ctrl-C stops everything
demo:
	$(CARGO) build --release -p originstack-proxy
	DEMO_PROXY_BIN=$(RELEASE_DIR)/originstack-proxy ./scripts/demo.sh

## deps: install everything the tests need (idempotent; quick when all is present)
deps:
	./scripts/deps.sh

## test: install dependencies, then run every tier (unit, integration with real peers, end-to-end)
## and a short pass of every fuzz target. Every tier runs from one cargo invocation over the
## whole workspace: selecting packages one by one would unify dependency features differently
## and compile the workspace again for each.
test: deps
	$(CARGO) test --workspace --all-targets --no-run
	$(MAKE) --no-print-directory release-binaries
	$(CARGO) test --workspace --lib --bins --tests
	$(MAKE) --no-print-directory fuzz-smoke

## test-unit: pure tests inside the crates (no peers)
test-unit:
	$(CARGO) test --workspace --lib --bins

## test-integration: every integration test against real peers (redis, nginx-rtmp, kube-apiserver),
## the end-to-end tests of tests/tests included; one workspace build shared with test-unit
test-integration:
	$(CARGO) test --workspace --test '*'

## test-e2e: only the end-to-end tests across both binaries (tests/tests); selecting the one
## package builds its dependencies with other features, so this compiles more than the above
test-e2e:
	$(CARGO) test -p originstack-e2e --test '*'

## bench: the standard benchmarks (long, about 15 minutes with the build; not part of `make test`): writes
## bench/report.md and bench/report.png, raw results under bench/out/. BENCH_ARGS are passed on
## (e.g. BENCH_ARGS="--only relay,idle --repeats 5"; `originstack-bench run --help`).
bench: deps
	$(CARGO) build --release -p originstack-proxy -p originstack-bench
	$(RELEASE_DIR)/originstack-bench run $(BENCH_ARGS)

## fuzz: every cargo-fuzz target of the proxy's parsers for FUZZ_SECONDS each (default 600)
FUZZ_SECONDS ?= 600
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

## fuzz-smoke: every fuzz target for 10 s (part of make test)
fuzz-smoke:
	./scripts/fuzz.sh 10

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

## release-binaries: the release build proxy/Dockerfile and operator/Dockerfile run (one cargo
## invocation, so shared dependencies build once)
release-binaries:
	$(CARGO) build --release --locked -p originstack-proxy -p originstack-operator

## generate: rewrite every generated file (CRD YAML, chart RBAC rules, reference docs) from the
## code; tests fail when a committed one is out of date
generate:
	$(CARGO) run -q -p originstack-operator -- crd > crds/originclusters.originstack.dev.yaml
	cp crds/originclusters.originstack.dev.yaml charts/originstack/files/
	$(CARGO) run -q -p originstack-operator -- rbac > charts/originstack/templates/_rules.tpl
	ORIGINSTACK_UPDATE_DOCS=1 $(CARGO) test -q -p originstack-proxy --test docs_reference -- --test-threads=1
	ORIGINSTACK_UPDATE_DOCS=1 $(CARGO) test -q -p originstack-operator --test docs_reference -- --test-threads=1

## cluster-up: a real one-node Kubernetes on this machine (run as root: kubelet, containerd,
## iptables), the chart installed from locally built images and examples/minimal.yaml Ready;
## writes target/cluster/env (KUBECONFIG, KUBECTL, NAMESPACE, CLUSTER, PROXY_RTMP, PROXY_HTTP).
## See docs/local-cluster.md.
cluster-up: deps
	$(MAKE) --no-print-directory release-binaries
	$(CARGO) build -p originstack-e2e --bins
	$(CARGO_TARGET_DIR)/debug/originstack-cluster up target/cluster

## cluster-down: stop what cluster-up started and remove what it left on the machine
cluster-down:
	$(CARGO) build -p originstack-e2e --bin originstack-cluster
	$(CARGO_TARGET_DIR)/debug/originstack-cluster down target/cluster

## k8s-assets-path: print the directory holding kube-apiserver, etcd, helm, promtool and the CRDs (builds them once)
k8s-assets-path:
	@tests/k8s-assets/build.sh --print-path

clean:
	$(CARGO) clean
