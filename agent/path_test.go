package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// lineTarget is a raw TCP target that records the request line of every request, byte for
// byte, with the request's Hookrelay-Id, and answers 200.
type lineTarget struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	lines map[string]string // Hookrelay-Id → request line
	all   []string
}

func newLineTarget(t *testing.T) *lineTarget {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt := &lineTarget{ln: ln, lines: map[string]string{}}
	lt.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			lt.wg.Go(func() { lt.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); lt.wg.Wait() })
	return lt
}

func (lt *lineTarget) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(line+"\r\n"), br)))
		id := ""
		if err == nil {
			id = req.Header.Get("Hookrelay-Id")
			io.Copy(io.Discard, req.Body)
		}
		lt.mu.Lock()
		lt.lines[id] = line
		lt.all = append(lt.all, line)
		lt.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil || req == nil {
			return
		}
	}
}

func (lt *lineTarget) line(id string) (string, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	l, ok := lt.lines[id]
	return l, ok
}

// escapingSuffixes are suffixes crafted to take a request off its target's path: to another
// host (a request line in absolute form, or a path read as "//host"), or up out of the base.
var escapingSuffixes = []string{
	"//evil.example/x{",
	"//evil.example/x",
	"//evil.example",
	"///evil.example/x",
	"/%2fevil.example/x",
	"/%2Fevil.example/x",
	"/%5cevil.example/x",
	"/\\evil.example/x",
	"/\\\\evil.example/x",
	"/%252fevil.example/x",
	"/..;/admin",
	"/a/..;jsessionid=1/b",
	"/%2e%2e;/admin",
	"/.%2e%3b/admin",
	"/%252e%252e/x",
	"/%25252e%25252e/x",
	"/a%2f..%2fb",
	"/a%5c..%5cb",
	"/a\\..\\b",
	"/%2e%2e%00/x",
	"/a?b",
}

// TestDeliverRefusesEscapingSuffix: a target only ever receives an origin-form request line
// under its configured path; a suffix that would leave it is refused with a dead letter.
func TestDeliverRefusesEscapingSuffix(t *testing.T) {
	for _, base := range []string{"", "/", "/base"} {
		t.Run("base="+base, func(t *testing.T) {
			lt := newLineTarget(t)
			a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute("http://"+lt.ln.Addr().String()+base))
			runDeliverers(t, a)
			prefix := strings.TrimSuffix(base, "/")

			appendRecord(t, a, &persist.Record{ID: "good", Queue: "ep", Path: "/ok/x%2Fy"})
			for i, s := range escapingSuffixes {
				appendRecord(t, a, &persist.Record{ID: fmt.Sprintf("bad%02d", i), Queue: "ep", Path: s})
			}
			waitState(t, a, "good", persist.StateDelivered)
			if got, want := mustLine(t, lt, "good"), "POST "+prefix+"/ok/x%2Fy HTTP/1.1"; got != want {
				t.Errorf("good request line %q, want %q", got, want)
			}
			for i, s := range escapingSuffixes {
				id := fmt.Sprintf("bad%02d", i)
				rec := waitFinished(t, a, id)
				if rec.State != persist.StateDead || !strings.Contains(rec.DeadReason, "path") {
					t.Errorf("suffix %q: %v (%q), want dead with a reason naming the path", s, rec.State, rec.DeadReason)
				}
				if l, ok := lt.line(id); ok {
					t.Errorf("suffix %q reached the target as %q", s, l)
				}
			}
			lt.mu.Lock()
			defer lt.mu.Unlock()
			for _, l := range lt.all {
				if !strings.HasPrefix(l, "POST "+prefix+"/") || strings.HasPrefix(l, "POST //") {
					t.Errorf("request line %q is not origin-form under %q", l, base)
				}
			}
		})
	}
}

// waitFinished waits until record id is delivered or dead and returns it.
func waitFinished(t *testing.T, a *Agent, id string) *persist.Record {
	t.Helper()
	var rec *persist.Record
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		r, err := a.Store().Get(id)
		if err != nil {
			return err
		}
		if r.State != persist.StateDelivered && r.State != persist.StateDead {
			return fmt.Errorf("%s is %v", id, r.State)
		}
		rec = r
		return nil
	})
	return rec
}

func mustLine(t *testing.T, lt *lineTarget, id string) string {
	t.Helper()
	l, ok := lt.line(id)
	if !ok {
		t.Fatalf("%s never reached the target", id)
	}
	return l
}

// FuzzCheckPath: whatever suffix the agent accepts yields an origin-form request line under
// the target's path, toward the target's host, with no ".." segment.
func FuzzCheckPath(f *testing.F) {
	for _, s := range append([]string{"", "/", "/a/b", "/a%2Fb", "/{x}", "/caf\xc3\xa9", "/a//b", "/.well-known/x"}, escapingSuffixes...) {
		f.Add(s, "")
	}
	f.Add("/x", "a=1&b=%2F")
	bases := map[string]string{"http://h": "/", "http://h/": "/", "http://h/base": "/base/", "http://h/b%2Fc/": "/b%2Fc/"}
	for target := range bases {
		if _, err := parseTarget(target); err != nil {
			f.Fatalf("target %s: %v", target, err)
		}
	}
	f.Fuzz(func(t *testing.T, suffix, query string) {
		for target, under := range bases {
			base, _ := parseTarget(target)
			u, err := targetURL(base, suffix, query)
			if err != nil {
				continue
			}
			req, err := http.NewRequest("POST", target, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL, req.Host = u, u.Host
			var buf bytes.Buffer
			if err := req.Write(&buf); err != nil {
				continue // refused by net/http itself: nothing is sent
			}
			line, _, _ := strings.Cut(buf.String(), "\r\n")
			ruri := strings.TrimSuffix(strings.TrimPrefix(line, "POST "), " HTTP/1.1")
			path, _, _ := strings.Cut(ruri, "?")
			if !strings.HasPrefix(path+"/", under) || strings.HasPrefix(path, "//") {
				t.Fatalf("%s + %q: request line %q is not origin-form under %s", target, suffix, line, under)
			}
			for _, p := range []string{path, unescapeOnce(path)} {
				for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
					if seg == ".." || strings.HasPrefix(seg, "..;") {
						t.Fatalf("%s + %q: request line %q has a .. segment", target, suffix, line)
					}
				}
			}
			got, err := http.ReadRequest(bufio.NewReader(&buf))
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("%s + %q: request %q does not parse: %v", target, suffix, line, err)
			}
			if err == nil && got.Host != "h" {
				t.Fatalf("%s + %q: request %q goes to host %q", target, suffix, line, got.Host)
			}
		}
	})
}

func unescapeOnce(p string) string {
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}
