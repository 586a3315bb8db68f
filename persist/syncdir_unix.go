//go:build !windows

package persist

import "os"

// syncDir fsyncs a directory, so that the names created in it outlive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
