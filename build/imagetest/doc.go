// Package imagetest holds the test of hookrelay's OCI image (build/image.sh, `make image`):
// it builds the image with podman into a private store, exports a container's filesystem and
// runs both programs from it with chroot, since `podman run` does not work everywhere (crun
// needs setrlimit and cgroups). It needs root and podman; it skips without them, and fails
// instead when CI=true.
package imagetest
