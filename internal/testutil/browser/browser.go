// Package browser starts headless Chromium for the admin UI's browser tests (internal/admin
// and e2e), apart from testutil so that only those tests link chromedp.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// ChromiumPath finds the browser, or skips the test (fails it when CI=true).
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	testutil.Missing(t, "chromium not found: install it (apt-get install -y chromium) to run the browser test")
	return ""
}

// Start starts headless Chromium at path with the flags an offline machine needs and returns
// a tab's context with a deadline of total for the whole test's browsing. The browser stops
// when the test ends.
func Start(t testing.TB, path string, total time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx (no timeout)
		t.Fatalf("start chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, total)
	t.Cleanup(tcancel)
	return tctx
}

// PollJS waits until the JavaScript expression is truthy, for at most 10s.
func PollJS(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// WatchExceptions collects the page's uncaught JavaScript exceptions; call the result to read
// them. Its goroutine ends with ctx.
func WatchExceptions(ctx context.Context) func() []string {
	var mu sync.Mutex
	var errs []string
	events := chromedp.Events(ctx, runtime.ExceptionThrown) // subscribed before anything runs
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s %+v", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception))
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// SaveScreenshot writes png as name to the test's artifact folder, and to
// HOOKRELAY_SCREENSHOT_DIR when set (docs/ keeps one for the README).
func SaveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
	if dir := os.Getenv("HOOKRELAY_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshot dir: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatalf("copy screenshot: %v", err)
		}
	}
}
