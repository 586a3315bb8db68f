package persist

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashEnv = "HOOKRELAY_PERSIST_CRASH_DIR"

// crashRecord derives a record's whole content from its id, so the parent can check it.
func crashRecord(id string) *Record {
	h := fnv.New64a()
	h.Write([]byte(id))
	rng := rand.New(rand.NewPCG(h.Sum64(), 7))
	body := make([]byte, rng.IntN(40<<10)) // some above the value threshold
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	return &Record{
		ID: id, Queue: fmt.Sprint("q", rng.IntN(3)), Method: "POST", Path: "/p/" + id, Query: "id=" + id,
		Headers: []Header{{"Content-Type", "application/octet-stream"}, {"X-Sig", fmt.Sprintf("sha256=%x", rng.Uint64())},
			{"x-sig", " second, lower-case "}},
		Body: body,
	}
}

// TestCrashChild is the child of TestCrashKill9: it appends until killed, printing each id
// whose Append returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestCrashKill9")
	}
	s, err := Open(Options{Dir: dir, Small: true, MinFree: -1})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	run := os.Getenv(crashEnv + "_RUN")
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute) // never outlive a parent that died
	for g := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				r := crashRecord(fmt.Sprintf("r%s-g%d-%06d", run, g, i))
				if err := s.Append(context.Background(), r); err != nil {
					fmt.Println("ERR", err)
					os.Exit(2)
				}
				mu.Lock()
				os.Stdout.WriteString("OK " + r.ID + "\n") // one write: the line is out when it returns
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(3)
}

// TestCrashKill9 kills a process appending concurrently with kill -9 in mid-stream, reopens
// its store and checks that every record whose Append had returned is there, byte-exact.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	var reported []string
	for run := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s_RUN=%d", crashEnv, run))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 200 + rand.IntN(400)
		got := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ERR") {
				t.Errorf("child: %s", line)
			}
			id, ok := strings.CutPrefix(line, "OK ")
			if !ok {
				continue
			}
			reported = append(reported, id)
			if got++; got == killAfter {
				cmd.Process.Kill() // SIGKILL; lines already written still arrive
			}
		}
		cmd.Wait()
		if got < killAfter {
			t.Fatalf("run %d: child stopped after %d ids, before the kill\n%s", run, got, stderr.String())
		}
		t.Logf("run %d: killed after %d ids, %d read in all", run, killAfter, got)

		s := openT(t, dir, nil)
		for _, id := range reported {
			r, err := s.Get(id)
			if err != nil {
				t.Fatalf("run %d: reported record %s: %v", run, id, err)
			}
			want := crashRecord(id)
			if r.Queue != want.Queue || r.Path != want.Path || r.Query != want.Query ||
				!reflect.DeepEqual(r.Headers, want.Headers) || !bytes.Equal(r.Body, want.Body) || r.State != StateReady {
				t.Fatalf("run %d: record %s differs after the crash", run, id)
			}
		}
		mustOK(t, s.Close())
	}
}
