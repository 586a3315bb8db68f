package persist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// A body file that meets a full filesystem fails its write with ErrDiskFull (the relay then
// answers 507, the agent nacks), leaves no file behind, and the store goes on storing what
// fits. Badger's own writes go through mmap, where a full disk is a crash, hence MinFree; a
// body file is written with write(2), so even under the floor it fails cleanly. The floor is
// off here (MinFree -1) so that the write itself meets the full disk.
func TestBodyFileDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		missing(t, "needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=12m"); err != nil {
		missing(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	s := openT(t, dir, func(o *Options) { o.MinFree = -1 })
	t.Cleanup(func() { s.Close() }) // before the unmount (cleanups run last first)

	w, err := s.NewBody()
	if err != nil {
		t.Fatal(err)
	}
	big := randomBody(1 << 20)
	for i := 0; i < 32 && err == nil; i++ {
		_, err = w.Write(big)
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("writing 32 MiB to a 12 MiB filesystem: %v, want ErrDiskFull", err)
	}
	if err := s.AppendBody(context.Background(), rec("q", ""), w); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("AppendBody after a failed write: %v, want ErrDiskFull", err)
	}
	if n := countFiles(t, s); n != 0 {
		t.Fatalf("%d body files left after the failed append", n)
	}
	// The first write itself fails (the file is created, 1 MiB does not fit): the file goes
	// too. Badger's mapped files keep some room: a mapping that meets a full disk is a crash.
	filler := dir + "/filler"
	t.Cleanup(func() { os.Remove(filler) }) // before the store's Close, which writes a table
	mustOK(t, fillDisk(filler))
	w, err = s.NewBody()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(big); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("first flush on a full filesystem: %v, want ErrDiskFull", err)
	}
	w.Abort()
	if n := countFiles(t, s); n != 0 {
		t.Fatalf("%d body files left after a first flush that failed", n)
	}
	mustOK(t, os.Remove(filler))

	body := randomBody(2<<20 + 3)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append of a body that fits, after the failure: %v", err)
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatal("the body stored after the failure reads back different")
	}
}

// fillDisk writes zeros to path until its filesystem is full, then gives 512 KiB back.
func fillDisk(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zeros := make([]byte, 64<<10)
	for {
		if _, err := f.Write(zeros); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				st, err := f.Stat()
				if err != nil {
					return err
				}
				return f.Truncate(max(0, st.Size()-512<<10))
			}
			return err
		}
	}
}
