package persist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// vlogCheck finds value-log write-back errors that Badger swallows. Badger v4.9.6 (the newest
// release) syncs the value log after each write and only logs a failure of that sync: the
// commit is still reported as successful, although the values it points to may never have
// reached the disk. The memtable WAL's sync error does propagate; the value log's does not.
//
// Linux reports a write-back error to every open file description of the file (errseq), not
// only to the first that syncs: so the committer keeps a descriptor of its own on the newest
// value-log file, and after a commit during which Badger logged an error it fdatasyncs it; an
// error there fails the batch. Not after every commit: a sync of a clean file still costs
// ~40 µs here, and Badger never loses this error without logging it.
//
// A file is watched from when the committer first sees it. Badger creates the next file when
// a commit fills the current one, and writes into it from the next commit on; the committer
// opens it in between, so no commit's values land in a file the check does not watch.
type vlogCheck struct {
	dir string
	fid int
	f   *os.File // nil when there is no value-log file (yet)
}

// openVlogCheck watches the newest value-log file in dir.
func openVlogCheck(dir string) (*vlogCheck, error) {
	c := &vlogCheck{dir: dir, fid: -1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("value log check: %w", err)
	}
	for _, e := range entries {
		if fid, ok := vlogFid(e); ok && fid > c.fid {
			c.fid = fid
		}
	}
	if c.fid >= 0 {
		if c.f, err = os.Open(c.path(c.fid)); err != nil {
			return nil, fmt.Errorf("value log check: %w", err)
		}
	}
	return c, nil
}

func vlogFid(e fs.DirEntry) (int, bool) {
	name, ok := strings.CutSuffix(e.Name(), ".vlog")
	if !ok || e.IsDir() {
		return 0, false
	}
	fid, err := strconv.Atoi(name)
	return fid, err == nil
}

func (c *vlogCheck) path(fid int) string {
	return filepath.Join(c.dir, fmt.Sprintf("%06d.vlog", fid))
}

// check reports a write-back error of the value log since the last check, and moves on to a
// file Badger created meanwhile (after checking the one it leaves).
func (c *vlogCheck) check() error {
	var errs []error
	for {
		f, err := os.Open(c.path(c.fid + 1))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("value log check: %w", err)
		}
		if c.f != nil {
			errs = append(errs, c.sync())
			c.f.Close()
		}
		c.f, c.fid = f, c.fid+1
	}
	if c.f != nil {
		errs = append(errs, c.sync())
	}
	return errors.Join(errs...)
}

func (c *vlogCheck) sync() error {
	if err := fdatasync(c.f); err != nil {
		return fmt.Errorf("value log %s not on disk: %w", filepath.Base(c.f.Name()), err)
	}
	return nil
}

func (c *vlogCheck) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}
