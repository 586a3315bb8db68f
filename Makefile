# hookrelay build, cross-build and packages.
#   make build     bin/hookrelay, bin/hookagent for this machine
#   make cross     dist/<prog>_<os>_<arch>[.exe] for the release targets (CGO off)
#   make package   dist/<prog>_<version>_<arch>.deb and .rpm for linux amd64, arm64, armv7
#   make image     OCI image of both programs for linux amd64, arm64, armv7 (build/image.sh;
#                  podman, buildah or docker; e.g. ENGINE_OPTS='--storage-driver vfs')
#   make test      go test ./...
# NFPM may name another nfpm: make package NFPM=/tmp/bin/nfpm

GO          ?= go
NFPM        ?= $(GO) tool nfpm
DESCRIBE    := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG_VERSION ?= $(shell packaging/version.sh)
LDFLAGS     := -s -w -X main.version=$(DESCRIBE) -X main.commit=$(COMMIT)

PROGRAMS := hookrelay hookagent
# os/arch, or linux/arm/7 for GOARM=7
CROSS    := linux/amd64 linux/arm64 linux/arm/7 darwin/amd64 darwin/arm64 windows/amd64
# nfpm's GOARCH-style names; arm7 is GOARCH=arm GOARM=7 (deb armhf, rpm armv7hl)
PKG_ARCH := amd64 arm64 arm7

.PHONY: all build cross package image test vet clean

all: build

build:
	@mkdir -p bin
	@set -e; for p in $(PROGRAMS); do \
		echo "build bin/$$p"; \
		$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/$$p ./cmd/$$p; \
	done

cross:
	@mkdir -p dist
	@set -e; for t in $(CROSS); do \
		os=$$(echo $$t | cut -d/ -f1); arch=$$(echo $$t | cut -d/ -f2); arm=$$(echo $$t | cut -d/ -f3); \
		ext=; [ $$os != windows ] || ext=.exe; \
		for p in $(PROGRAMS); do \
			out=dist/$${p}_$${os}_$${arch}$${arm:+v$$arm}$$ext; echo "build $$out"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm \
				$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/$$p; \
		done; \
	done

package:
	@mkdir -p dist
	@set -e; for a in $(PKG_ARCH); do \
		goarch=$$a; goarm=; [ $$a != arm7 ] || { goarch=arm; goarm=7; }; \
		for p in $(PROGRAMS); do \
			echo "build dist/linux_$$a/$$p"; \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=$$goarm \
				$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/linux_$$a/$$p ./cmd/$$p; \
			for f in deb rpm; do \
				VERSION=$(PKG_VERSION) ARCH=$$a BINDIR=dist/linux_$$a \
					$(NFPM) package -f packaging/$$p.nfpm.yaml -p $$f -t dist/; \
			done; \
		done; \
	done

image:
	VERSION=$(DESCRIBE) GO=$(GO) build/image.sh

test:
	$(GO) test ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin dist
