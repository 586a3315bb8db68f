package persist

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// badgerOptions returns the Badger profile: small (agent, edge boxes) or the relay's.
//
// SyncWrites is on: every commit fsyncs the value log and the memtable WAL, and the committer
// makes one commit serve a whole batch (see doc.go for why not SyncWrites=false plus db.Sync).
// Conflict detection is off: the committer is the only writer.
// errored, when set, is raised by every error Badger logs (see vlogcheck.go).
//
// Tables are not compressed: what the LSM tree holds is keys, small metadata and value
// pointers, a few MiB at most, and Snappy's block buffers were 8 of the agent's 48 MiB of live
// heap at its peak, its CPU a cost on every flush and compaction. The table builders are what
// sized the memtables below: a flush builds one table of a whole memtable in an allocator that
// starts at twice the base table size and doubles, so an 8 MiB memtable with 2 MiB base tables
// held 4+8+16 = 28 MiB while it flushed (the relay's peak profile in a 1 KiB burst: live heap
// 67 MiB against its 56 MiB soft limit, the GC then took most of its CPU: 206 µs of relay CPU
// per webhook). With 4 MiB memtables, 1 MiB base tables and no compression: 114 µs
// (hookbench's "CPU per webhook" row, same machine, minutes apart).
func badgerOptions(o Options, log *slog.Logger, errored *atomic.Bool) badger.Options {
	bo := badger.DefaultOptions(o.Dir).
		WithLogger(badgerLogger{l: log.With("component", "badger"), errored: errored}).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumCompactors(2).
		WithCompression(options.None)
	if o.valueDir != "" {
		bo = bo.WithValueDir(o.valueDir)
	}
	threshold := int64(valueThreshold)
	if o.valueThreshold > 0 {
		threshold = o.valueThreshold
	}
	if o.Small {
		// About 12 MiB of memory: 2×2 MiB memtables, 4+2 MiB caches (the memtables were
		// 2×4 MiB, see above for why smaller). The agent runs under a
		// soft memory limit (cmd/hookagent, 40 MiB) so that its RSS stays within 64 MiB; with
		// 2×8 MiB memtables and 8+4 MiB caches (about 30 MiB that the GC counts as live: the
		// arenas are allocated whole) the heap sat near the limit in a long 1 KiB burst and
		// the GC took a quarter of the agent's CPU; with this, 7%. See valueThreshold for
		// what goes to the value log.
		return bo.WithMemTableSize(2 << 20).
			WithNumMemtables(2).
			WithValueLogFileSize(16 << 20).
			WithBlockCacheSize(4 << 20).
			WithIndexCacheSize(2 << 20).
			WithNumLevelZeroTables(2).
			WithNumLevelZeroTablesStall(8).
			WithBaseTableSize(1 << 20).
			WithValueThreshold(threshold)
	}
	// Relay: ~25 MiB of memtables and caches (2×4 MiB memtables: were 2×8, see above), and
	// the same value threshold. Value-log files of 16 MiB, as the agent's: the
	// file being written is mapped and its written pages count in the relay's RSS (up to
	// 45 MiB of file pages with 64 MiB files over a 60k backlog, 21–25 MiB with 16: relay peak
	// 91 → 76 MiB). The
	// relay runs under a soft memory limit (cmd/hookrelay, 48 MiB) and the GC counts the
	// memtable arenas whole: with 2×16 MiB memtables the heap sat at the limit and the GC took
	// 12% of the relay's CPU in a 12k × 1 KiB burst, 2% with 2×8 MiB. With
	// 64 MiB memtables ×3 and bodies up to 4 KiB in the LSM tree, the memtable arenas and the
	// compaction's table builders (which build tables of bodies) held 650 MiB of heap after
	// 200k webhooks of 1 KiB (RSS 845 MiB); with 16 MiB ×2 and bodies still in the tree,
	// 380 MiB; with bodies of 1 KiB and more in the value log, 65–110 MiB. The price is a
	// second synced log per commit (value log and WAL), as the agent has always paid.
	//
	// Tables of 512 KiB at every level (Badger doubles them per level below the base by
	// default): a compaction builds up to five tables at once and writes more while it builds,
	// each in an allocator of twice the table's size, and pools up to eight of them. Over a
	// 1,000,000 backlog, with the LSM tree three levels deep, the builders held 42 of the
	// relay's 82 MiB of heap at its peak (HOOKRELAY_PEAKHEAP). Over 300,000 (alternating
	// hookbench runs) the relay's peak RSS, accepting / draining, was 76–79 / 108–114 MiB
	// against 82–99 / 124–126 with 1 MiB doubling; its CPU per webhook within the noise.
	bo.TableSizeMultiplier = 1
	return bo.WithMemTableSize(4 << 20).
		WithBaseTableSize(512 << 10).
		WithNumMemtables(2).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		WithValueThreshold(threshold)
}

// valueThreshold sends every value of 64 bytes and more to the value log: bodies, and each
// record's metadata (method, path, headers, state, attempts), which every state change
// rewrites. The LSM tree keeps keys, value pointers and the ready index's small entries, so
// flushes and compactions build small tables, and few of them.
//
// The threshold was 1 KiB, which kept the metadata in the tree. A compaction builds its output
// tables concurrently (up to 8 and more at once), each in an allocator of twice the table size
// plus a 3 MiB index builder, whatever the table holds. At the agent's peak over the 64 KiB
// burst these builders were 25 of its 41 MiB of live heap (HOOKAGENT_PEAKHEAP); with 64 bytes,
// 4 of 21. In alternating hookbench runs (go run ./cmd/hookbench -transports ws -n1k 20000
// -n64k 2000 -paced 1s -large 0 -idle 0 -backlog 50000 -cluster 0 -sustained 2 -out ""):
// agent peak RSS 63–66 MiB against 72–83, agent CPU per webhook of the 1 KiB burst 213–286 µs
// against 266–299, the relay's peak over a 50,000 backlog 67–72 MiB against 91–93, burst and
// drain rates within the noise. A record read cold now takes a value-log read as well; value-log
// GC (gc.go) reclaims the older versions of the metadata as it does bodies.
const valueThreshold = 64

// badgerLogger sends Badger's warnings and errors to slog and drops its info and debug chatter.
// An error also raises errored (when set): Badger logs some failures it does not return.
type badgerLogger struct {
	l       *slog.Logger
	errored *atomic.Bool
}

func (b badgerLogger) Errorf(f string, a ...any) {
	if b.errored != nil {
		b.errored.Store(true)
	}
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// mapErr turns a Badger or OS error into our sentinels where one applies.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.Is(err, badger.ErrDBClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// checkFormat writes the format key into a new store and refuses a store with another one. It
// reports whether the store is of format 1, which load migrates (it adds the ready keys). A
// store of format 2 becomes format 3 at once: 3 only adds body files (bodyfile.go), which a
// build reading format 2 would not find, so it must refuse the store rather than lose them.
func checkFormat(db *badger.DB, dir string, log *slog.Logger) (migrate bool, err error) {
	var found []byte
	empty := true
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err == nil {
			found, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("read store format: %w", err)
	}
	switch {
	case found != nil && string(found) == formatVersion:
		return false, nil
	case found != nil && string(found) == "1":
		return true, nil
	case found != nil && string(found) == "2":
		log.Info("persist: store format 2 becomes " + formatVersion + " (large bodies in files)")
		return false, writeFormat(db)
	case found != nil:
		return false, fmt.Errorf("%w: %s holds format %q, this build reads format %q", ErrFormat, dir, found, formatVersion)
	case !empty:
		return false, fmt.Errorf("%w: %s holds data without a format key (not a hookrelay store?)", ErrFormat, dir)
	}
	return false, writeFormat(db)
}

func writeFormat(db *badger.DB) error {
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(formatKey, []byte(formatVersion))
	}); err != nil {
		return fmt.Errorf("write store format: %w", mapErr(err))
	}
	return nil
}
