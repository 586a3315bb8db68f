package imagetest

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// arches are the image's architectures and the platform each image must name.
var arches = map[string][2]string{ // arch -> {architecture, variant}
	"amd64": {"amd64", ""},
	"arm64": {"arm64", ""},
	"arm7":  {"arm", "v7"},
}

// TestImage builds the image for every architecture with build/image.sh, checks each image's
// config (user, entrypoint, OCI labels, platform) and the manifest list, then exports an
// amd64 container and runs both programs from its filesystem as the image's user.
func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Missing(t, "this test needs root (chroot)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		testutil.Missing(t, "podman is not installed (apt-get install podman)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	// A private vfs store: nothing the test builds lands in the machine's images, and vfs works
	// where overlay mounts are refused.
	opts := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
		"--storage-driver", "vfs"}
	podman := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("podman", append(append([]string{}, opts...), args...)...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	// Remove what was created before the store goes: vfs layers are plain directories, but
	// podman may keep a container's state open otherwise.
	t.Cleanup(func() {
		exec.Command("podman", append(append([]string{}, opts...), "rm", "--all", "--force")...).Run()
		exec.Command("podman", append(append([]string{}, opts...), "rmi", "--all", "--force")...).Run()
	})

	const image, version = "localhost/hookrelay-imagetest", "0.0.0-imagetest"
	names := make([]string, 0, len(arches))
	for a := range arches {
		names = append(names, a)
	}
	cmd := exec.Command(filepath.Join(root, "build/image.sh"))
	cmd.Env = append(os.Environ(), "ENGINE=podman", "ENGINE_OPTS="+strings.Join(opts, " "),
		"ARCHES="+strings.Join(names, " "), "IMAGE="+image, "VERSION="+version,
		"REVISION=0123456789abcdef0123456789abcdef01234567", "CONTEXT="+filepath.Join(store, "ctx"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build/image.sh: %v\n%s", err, out)
	}

	for a, plat := range arches {
		var cfg []struct {
			Architecture, Os string
			Config           struct {
				User       string
				Entrypoint []string
				Env        []string
				Labels     map[string]string
			}
		}
		if err := json.Unmarshal([]byte(podman("image", "inspect", image+":"+version+"-"+a)), &cfg); err != nil || len(cfg) != 1 {
			t.Fatalf("image inspect %s: %v (%d images)", a, err, len(cfg))
		}
		c := cfg[0]
		// podman 4.3's inspect leaves out the variant: the manifest list below checks it.
		if c.Os != "linux" || c.Architecture != plat[0] {
			t.Errorf("%s: platform %s/%s, want linux/%s", a, c.Os, c.Architecture, plat[0])
		}
		if c.Config.User != "65532:65532" {
			t.Errorf("%s: User %q, want 65532:65532", a, c.Config.User)
		}
		if strings.Join(c.Config.Entrypoint, " ") != "/usr/bin/hookrelay" {
			t.Errorf("%s: Entrypoint %q, want [/usr/bin/hookrelay]", a, c.Config.Entrypoint)
		}
		for k, want := range map[string]string{
			"title": "hookrelay", "version": version, "revision": "0123456789abcdef0123456789abcdef01234567",
			"source": "https://github.com/hookrelay/hookrelay", "licenses": "", "created": "",
		} {
			got, ok := c.Config.Labels["org.opencontainers.image."+k]
			if !ok || got == "" || want != "" && got != want {
				t.Errorf("%s: label org.opencontainers.image.%s = %q, want %q", a, k, got, want)
			}
		}
	}
	var list struct {
		Manifests []struct {
			Platform struct{ Architecture, Variant string }
		}
	}
	if err := json.Unmarshal([]byte(podman("manifest", "inspect", image+":"+version)), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list.Manifests {
		got = append(got, m.Platform.Architecture+m.Platform.Variant)
	}
	if strings.Join(got, " ") != strings.Join(listOrder(names), " ") {
		t.Errorf("manifest list platforms %q, want %q", got, listOrder(names))
	}

	// Run both programs from the amd64 image's exported filesystem, as the image's user.
	cid := strings.TrimSpace(podman("create", image+":"+version+"-amd64"))
	fs := filepath.Join(store, "fs")
	entries := export(t, opts, cid, fs)
	for _, name := range []string{"usr/bin/hookrelay", "usr/bin/hookagent", "etc/ssl/certs/ca-certificates.crt", "etc/passwd"} {
		if entries[name] == nil {
			t.Errorf("image lacks /%s", name)
		}
	}
	for name := range entries {
		if base := filepath.Base(name); base == "sh" || base == "bash" || base == "busybox" {
			t.Errorf("image holds a shell: /%s", name)
		}
	}
	if h := entries["var/lib/hookrelay"]; h == nil || h.Uid != 65532 {
		t.Errorf("/var/lib/hookrelay is not owned by 65532: %+v", h)
	}
	if b, _ := os.ReadFile(filepath.Join(fs, "etc/passwd")); !strings.Contains(string(b), ":65532:65532:") {
		t.Errorf("/etc/passwd names no user 65532:\n%s", b)
	}
	for _, prog := range []string{"hookrelay", "hookagent"} {
		out, err := exec.Command("chroot", "--userspec=65532:65532", fs, "/usr/bin/"+prog, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), version) {
			t.Errorf("chroot %s --version: %v\n%s", prog, err, out)
		}
	}
	podman("rm", cid)
}

// listOrder is the order image.sh adds the arches to the manifest list, spelled
// architecture+variant as the list names them.
func listOrder(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, arches[n][0]+arches[n][1])
	}
	return out
}

// export writes container cid's filesystem into dir (podman export | tar -x) and returns its
// entries by path, without the leading "/".
func export(t *testing.T, opts []string, cid, dir string) map[string]*tar.Header {
	t.Helper()
	cmd := exec.Command("podman", append(append([]string{}, opts...), "export", cid)...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		entries[name] = h
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, os.FileMode(h.Mode).Perm())
		case tar.TypeReg:
			err = writeFile(dst, tr, os.FileMode(h.Mode).Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("podman export: %v", err)
	}
	return entries
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
