package persist

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Store is the durable queue. It owns its Badger handle and three goroutines (committer, lease
// reaper, GC loop); Close waits for them. All methods are safe for concurrent use.
type Store struct {
	// Static after Open.
	opts     Options
	log      *slog.Logger
	db       *badger.DB
	minFree  int64
	ids      *IDGen
	reqs     chan *request // to the committer
	stop     chan struct{} // closed by Close
	kick     chan struct{} // wakes the reaper to re-arm its timer
	sweepNow chan struct{} // wakes the GC loop for a sweep: too many finished records held
	wg       sync.WaitGroup

	// Owned by the committer.
	vlog      *vlogCheck    // see vlogcheck.go
	ioErr     error         // a value-log write-back error: every later write fails with it
	badgerErr atomic.Bool   // Badger logged an error since the committer last looked
	expect    int           // requests the next batch may expect (see collect)
	lastTook  time.Duration // how long the last commit took
	lingerT   *time.Timer   // collect's, reused
	spare     *batch        // the last batch, emptied, for the next to reuse its slices and maps
	sweptAt   time.Time     // when the committer last asked for an early sweep
	advisedAt time.Time     // when the logs' mappings were last advised (see adviseLogs)
	droppedAt time.Time     // when the mapped files' pages were last dropped (see adviseLogs)
	wroteBody int64         // body bytes committed since the value logs' pages were last dropped
	mapsDir   string        // opts.Dir as the kernel names it in /proc/self/maps
	bodies    string        // the directory of body files (bodyfile.go)

	// life is write-locked by Close only; holding it for reading keeps db open and lets a
	// request into reqs.
	life      sync.RWMutex
	closed    bool
	down      atomic.Bool // closed, readable without life
	closeOnce sync.Once
	closeErr  error

	gcMu         sync.Mutex   // one GC at a time
	txns         atomic.Int64 // Badger transactions committed (tests look)
	freed        atomic.Int64 // bytes of records deleted since GC last flattened the LSM tree
	flattenAfter int64

	// commitHook, when set (tests only), is called before each transaction commit; an error
	// fails that commit as Badger's would.
	commitHook func() error
	// submitHook, when set (tests only), is called by submit before it queues a request.
	submitHook func()
	// quarantined are the ids whose metadata did not decode at Open (static after Open).
	quarantined []string

	mu     sync.Mutex // guards idx and recent, and everything reachable from them
	idx    *index
	recent *recent
}

// Open opens (creating if needed) the store in opts.Dir, checks the store format version, and
// makes every record that was leased when the process died ready again (leases are not stored).
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open store: %w: empty dir", ErrInvalid)
	}
	opts = withDefaults(opts)
	s := &Store{
		opts: opts, log: opts.Logger, minFree: opts.MinFree,
		reqs: make(chan *request, maxBatchRequests),
		stop: make(chan struct{}), kick: make(chan struct{}, 1), sweepNow: make(chan struct{}, 1),
		idx: newIndex(opts.HoldUnreported), recent: newRecent(),
	}
	s.ids = NewIDGen()
	bo := badgerOptions(opts, s.log, &s.badgerErr)
	s.flattenAfter = bo.ValueLogFileSize / 2
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, mapErr(err))
	}
	s.db = db
	s.mapsDir = opts.Dir
	if abs, err := filepath.Abs(opts.Dir); err == nil {
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			s.mapsDir = real
		}
	}
	s.adviseLogs(time.Now(), 0)
	migrate, err := checkFormat(db, opts.Dir, s.log)
	if err == nil {
		err = s.openBodies()
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	vdir := opts.Dir
	if opts.valueDir != "" {
		vdir = opts.valueDir
	}
	if s.vlog, err = openVlogCheck(vdir); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	if err := s.load(migrate); err != nil {
		s.vlog.close()
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	s.start(s.commitLoop)
	s.start(s.reapLoop)
	s.start(s.gcLoop)
	s.start(s.pageLoop)
	return s, nil
}

func withDefaults(o Options) Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.KeepDone <= 0 {
		o.KeepDone = 24 * time.Hour
	}
	if o.KeepDoneMax <= 0 {
		o.KeepDoneMax = 10000
	}
	if o.KeepDead <= 0 {
		o.KeepDead = 7 * 24 * time.Hour
	}
	if o.KeepDeadMax <= 0 {
		o.KeepDeadMax = 10000
	}
	if o.GCInterval <= 0 {
		o.GCInterval = time.Minute
	}
	if o.MinFree == 0 {
		o.MinFree = 256 << 20
		if o.Small {
			o.MinFree = 64 << 20
		}
	}
	return o
}

// start runs fn in a goroutine that Close waits for.
func (s *Store) start(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// load builds the index from the stored metadata (ready records beyond each queue's window
// stay cold: counted, not held) and removes body segments whose metadata never committed (a
// crash between the transactions of one batch). With migrate (a format-1 store) it writes the
// state keys format 2 added, then the format key: a crash before that just migrates again.
func (s *Store) load(migrate bool) error {
	now := time.Now()
	var orphans, ready [][]byte
	var readyVals [][]byte
	var last string
	named := map[string]bool{} // staging names of bodies that records name (parts.go)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: metaPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(metaPrefix):])
			err := item.Value(func(v []byte) error {
				sum, bodyLen, err := decodeSummary(v)
				if err != nil {
					// Set aside, never deleted: its body stays too (see the orphan scan).
					s.log.Error("persist: record quarantined: its metadata does not decode", "id", id, "err", err)
					s.quarantined = append(s.quarantined, id)
					return nil
				}
				s.idx.insertLocked(id, sum, bodyLen, now)
				if k := stateKey(sum.state, sum.queue, id); migrate && k != nil {
					ready = append(ready, k)
					readyVals = append(readyVals, encodeReady(sum.next, sum.received))
				}
				last = id // keys come in order: the largest id is the last
				if mayHaveParts(bodyLen) {
					if r, _, err := decodeMeta(id, v); err == nil && r.parts != "" {
						named[r.parts] = true
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read record %s: %w", id, err)
			}
		}
		bt := txn.NewIterator(badger.IteratorOptions{Prefix: bodyPrefix})
		defer bt.Close()
		for bt.Rewind(); bt.Valid(); bt.Next() {
			k := bt.Item().Key()
			id := bodyKeyID(k)
			if id != "" && id[0] == partsMark {
				// A staged body no record names: its append never committed. Kept while a
				// record is quarantined, which may be the one naming it.
				if !named[id] && len(s.quarantined) == 0 {
					orphans = append(orphans, bt.Item().KeyCopy(nil))
				}
				continue
			}
			_, done := s.idx.done[id]
			if _, ok := s.idx.byID[id]; ok || done || slices.Contains(s.quarantined, id) {
				continue
			}
			if s.idx.cold > 0 || s.idx.acked > 0 {
				if _, err := txn.Get(metaKey(id)); err == nil {
					continue // cold
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
			}
			orphans = append(orphans, bt.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	if last != "" {
		s.ids.After(last, now)
	}
	if len(s.quarantined) == 0 { // else a quarantined record may be the one naming a file
		if err := s.removeOrphanFiles(named); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		s.log.Info("persist: removing unfinished bodies", "keys", len(orphans))
		if err := s.writeKeys(orphans, nil); err != nil {
			return fmt.Errorf("remove unfinished bodies: %w", err)
		}
	}
	if migrate {
		s.log.Info("persist: migrating the store to format "+formatVersion, "ready", len(ready))
		if err := s.writeKeys(ready, readyVals); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := writeFormat(s.db); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// deleteKeys deletes keys outside the committer (Open, and the staged parts of a body that was
// never appended: keys no request of the committer touches), in as few transactions as fit.
func (s *Store) deleteKeys(keys [][]byte) error { return s.writeKeys(keys, nil) }

// writeKeys sets keys to vals, or deletes them when vals is nil, outside the committer, in as
// few transactions as fit.
func (s *Store) writeKeys(keys, vals [][]byte) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	write := func(i int) error {
		if vals == nil {
			return txn.Delete(keys[i])
		}
		return txn.Set(keys[i], vals[i])
	}
	for i := range keys {
		err := write(i)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return mapErr(err)
			}
			txn = s.db.NewTransaction(true)
			err = write(i)
		}
		if err != nil {
			return mapErr(err)
		}
	}
	return mapErr(txn.Commit())
}

// Close stops the committer (finishing what is queued) and the other goroutines, then closes
// Badger. Idempotent; later calls wait for the first and return its result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.life.Lock()
		s.closed = true
		s.down.Store(true)
		s.life.Unlock()
		close(s.stop)
		s.wg.Wait()
		s.mu.Lock()
		for _, q := range s.idx.queues {
			q.broadcastLocked()
		}
		s.mu.Unlock()
		s.vlog.close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// reapLoop returns expired leases to Ready (waking their queues) as they expire.
func (s *Store) reapLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		s.mu.Lock()
		s.idx.expireLeasesLocked(now)
		next := time.Hour
		if len(s.idx.leases) > 0 {
			next = s.idx.leases[0].leaseExp.Sub(now)
		}
		s.mu.Unlock()
		t.Reset(next)
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// adviseEvery is how often, while commits happen, the committer looks for new log mappings
// to advise (Badger maps a new memtable WAL or value-log file now and then).
const adviseEvery = 100 * time.Millisecond

// dropEvery is how often, while commits happen, the committer drops the pages of Badger's
// mapped files from the process (dropMapped): what it wrote or read since stays resident
// until then. Options.dropEvery overrides it (tests).
const dropEvery = time.Second

// dropAfter is how many body bytes commits may leave mapped in the value logs before the
// committer drops their pages, sooner than adviseEvery: a burst of 64 KiB bodies writes
// ~85 MB/s here, and with a drop every 100 ms alone the agent held up to 8.8 MiB of
// value-log pages (a third of its file-backed RSS at its peak).
const dropAfter = 2 << 20

// fileSlack is how far the file-backed RSS may grow past where the last drop left it before
// pageLoop drops every mapped page at once, not waiting for dropEvery. Compactions and the
// value-log GC read through the mappings, tens of MiB in a quarter of a second: over a backlog
// of 1,000,000 the relay's file-backed RSS reached 72–76 MiB between the one-second drops, its
// total 175–181 MiB against 128 for the goal; checked every 100 ms by the committer, still 75.
// pageEvery and pageIdle are how often pageLoop reads /proc/self/statm (a few µs).
const (
	fileSlack = 8 << 20
	pageEvery = 20 * time.Millisecond
	pageIdle  = 250 * time.Millisecond
)

// adviseLogs marks the mappings of Badger's logs MADV_RANDOM (advise_linux.go) and drops the
// value-log pages that commits left mapped (bodies) when adviseEvery has passed since it last
// did or dropAfter body bytes were committed since (wrote: the bytes of the commit just
// made), and drops the pages of all of Badger's mapped files every dropEvery (and pageLoop
// sooner, once they hold fileSlack more than its last drop left).
func (s *Store) adviseLogs(now time.Time, wrote int) {
	every := dropEvery
	if s.opts.dropEvery != 0 {
		every = s.opts.dropEvery
	}
	s.wroteBody += int64(wrote)
	if now.Sub(s.advisedAt) < adviseEvery {
		if every > 0 && s.wroteBody >= dropAfter {
			s.wroteBody = 0
			dropBodyPages(s.mapsDir)
		}
		return
	}
	s.advisedAt = now
	adviseRandom(s.mapsDir)
	if every > 0 {
		s.wroteBody = 0
		dropBodyPages(s.mapsDir)
	}
	if every > 0 && now.Sub(s.droppedAt) >= every {
		s.droppedAt = now
		dropMapped(s.mapsDir)
	}
}

// pageLoop drops the pages of Badger's mapped files (dropMapped) whenever they add fileSlack
// to the process's file-backed RSS, checked every pageEvery while the store committed in the
// last second and every pageIdle otherwise (compactions go on after the last commit).
func (s *Store) pageLoop() {
	if s.opts.dropEvery < 0 || fileResident() == 0 {
		return // dropping is off, or not on this system
	}
	floor := fileResident()
	t := time.NewTimer(pageEvery)
	defer t.Stop()
	txns, busyAt := s.txns.Load(), time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		if n := s.txns.Load(); n != txns {
			txns, busyAt = n, now
		}
		if res := fileResident(); res > floor+fileSlack {
			dropMapped(s.mapsDir)
			floor = fileResident()
		} else if res < floor {
			floor = res
		}
		if now.Sub(busyAt) < time.Second {
			t.Reset(pageEvery)
		} else {
			t.Reset(pageIdle)
		}
	}
}

func (s *Store) kickReaper() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
