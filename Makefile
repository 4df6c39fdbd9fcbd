# podnet: the Kubernetes network in one Go binary.
GO ?= go
BIN := bin

.PHONY: all build demo test test-short deps bench vet clean

all: build

build:
	$(GO) build -o $(BIN)/podnet ./cmd/podnet
	$(GO) build -o $(BIN)/podnet-cni ./cmd/podnet-cni

# The main job: a 2-node lab, a small app across both nodes, a reachability table, cleanup.
demo: build
	./$(BIN)/podnet demo

# Every test: unit, root tests in network namespaces, and lab end-to-end (run as root).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# What a fresh Debian machine lacks (run as root).
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		iproute2 util-linux containernetworking-plugins iperf3 nftables bind9-dnsutils
	$(GO) mod download

bench: build
	$(GO) test -run XXX -bench . -benchtime 1x -v ./bench/cni/
	$(GO) run ./bench/throughput
	$(GO) run ./bench/services
	$(GO) run ./bench/dns
	$(GO) run ./bench/policy

clean:
	rm -rf $(BIN)
