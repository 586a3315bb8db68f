#!/bin/sh
# Builds hookrelay's OCI image for each of ARCHES: static binaries cross-built here (no
# emulation: the image is FROM scratch), the build machine's CA bundle, user 65532, no shell.
# Tags IMAGE:VERSION-ARCH for each arch; with podman or buildah also the manifest list
# IMAGE:VERSION naming them all.
#
# Environment (all optional):
#   ENGINE       podman, buildah or docker; default the first of them that works here
#                (a docker client without a reachable engine does not count)
#   ENGINE_OPTS  global options for podman/buildah, e.g. "--storage-driver vfs"
#   ARCHES       default "amd64 arm64 arm7" (arm7 = GOARCH=arm GOARM=7, platform linux/arm/v7)
#   IMAGE        default localhost/hookrelay
#   VERSION      default git describe; REVISION default the full commit
#   CA_BUNDLE    default /etc/ssl/certs/ca-certificates.crt
#   CONTEXT      build contexts go in CONTEXT/ARCH; default dist/image
#   GO           default go
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
ARCHES=${ARCHES:-amd64 arm64 arm7}
IMAGE=${IMAGE:-localhost/hookrelay}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
COMMIT=$(printf '%.7s' "$REVISION")
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ENGINE_OPTS=${ENGINE_OPTS:-}
# Reproducible builds set SOURCE_DATE_EPOCH; otherwise now.
CREATED=$(date -u ${SOURCE_DATE_EPOCH:+-d @$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ)

die() { echo "image.sh: $*" >&2; exit 1; }

if [ -z "${ENGINE:-}" ]; then
	for e in podman buildah docker; do
		command -v $e >/dev/null 2>&1 || continue
		# docker is only a client: it counts when its engine answers.
		if [ $e = docker ] && ! docker info >/dev/null 2>&1; then continue; fi
		ENGINE=$e
		break
	done
fi
[ -n "${ENGINE:-}" ] || die "no container engine: install podman or buildah (or run a docker engine)"
[ -r "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE: install ca-certificates or set CA_BUNDLE"
# shellcheck disable=SC2086
eng() { $ENGINE $ENGINE_OPTS "$@"; }

ctxroot=${CONTEXT:-dist/image}
manifest="$IMAGE:$VERSION"
if [ "$ENGINE" != docker ]; then
	eng manifest rm "$manifest" >/dev/null 2>&1 || true
	eng manifest create "$manifest" >/dev/null
fi
for a in $ARCHES; do
	goarch=$a goarm= platform=linux/$a
	case $a in
	amd64 | arm64) ;;
	arm7) goarch=arm goarm=7 platform=linux/arm/v7 ;;
	*) die "unknown arch $a (amd64, arm64, arm7)" ;;
	esac
	ctx=$ctxroot/$a
	rm -rf "$ctx"
	root=$ctx/rootfs
	mkdir -p "$root/etc/ssl/certs" "$root/usr/bin" "$root/var/lib" "$ctx/data"
	chmod 0700 "$ctx/data"
	for p in hookrelay hookagent; do
		echo "build $root/usr/bin/$p"
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm $GO build -trimpath \
			-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$root/usr/bin/$p" ./cmd/$p
	done
	install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
	printf 'root:x:0:0:root:/:/nonexistent\nhookrelay:x:65532:65532:hookrelay:/var/lib/hookrelay:/nonexistent\n' >"$root/etc/passwd"
	printf 'root:x:0:\nhookrelay:x:65532:\n' >"$root/etc/group"
	chmod 0644 "$root/etc/passwd" "$root/etc/group"
	tag="$IMAGE:$VERSION-$a"
	echo "image $tag ($platform, $ENGINE)"
	args="--platform $platform -f build/Containerfile -t $tag
		--build-arg VERSION=$VERSION --build-arg REVISION=$REVISION --build-arg CREATED=$CREATED"
	case $ENGINE in
	# shellcheck disable=SC2086
	buildah) eng bud $args "$ctx" ;;
	# shellcheck disable=SC2086
	*) eng build $args "$ctx" ;;
	esac
	if [ "$ENGINE" != docker ]; then
		eng manifest add "$manifest" "containers-storage:$tag" >/dev/null
	fi
done
if [ "$ENGINE" != docker ]; then
	echo "manifest list $manifest: $ARCHES"
fi
