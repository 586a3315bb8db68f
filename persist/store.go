package persist

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"
)

// Store is the durable queue. It owns its Badger handle and three goroutines (committer, lease
// reaper, GC loop); Close waits for them. All methods are safe for concurrent use.
type Store struct {
	// Static after Open.
	opts    Options
	log     *slog.Logger
	db      *badger.DB
	minFree int64
	ids     idGen
	reqs    chan *request // to the committer
	stop    chan struct{} // closed by Close
	kick    chan struct{} // wakes the reaper to re-arm its timer
	wg      sync.WaitGroup

	// Owned by the committer.
	vlog      *vlogCheck    // see vlogcheck.go
	ioErr     error         // a value-log write-back error: every later write fails with it
	badgerErr atomic.Bool   // Badger logged an error since the committer last looked
	expect    int           // requests the next batch may expect (see collect)
	lastTook  time.Duration // how long the last commit took
	lingerT   *time.Timer   // collect's, reused
	advisedAt time.Time     // when the logs' mappings were last advised (see adviseLogs)
	mapsDir   string        // opts.Dir as the kernel names it in /proc/self/maps

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
		stop: make(chan struct{}), kick: make(chan struct{}, 1),
		idx: newIndex(), recent: newRecent(),
	}
	s.ids.seed()
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
	s.adviseLogs(time.Now())
	if err := checkFormat(db, opts.Dir); err != nil {
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
	if err := s.load(); err != nil {
		s.vlog.close()
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	s.start(s.commitLoop)
	s.start(s.reapLoop)
	s.start(s.gcLoop)
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

// load builds the index from the stored metadata and removes body segments whose metadata
// never committed (a crash between the transactions of one batch).
func (s *Store) load() error {
	now := time.Now()
	var orphans [][]byte
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
				s.idx.addLocked(id, sum, now)
				last = id                 // keys come in order: the largest id is the last
				if bodyLen > stageFlush { // maybe staged in parts under a name of its own
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
			if _, ok := s.idx.byID[id]; !ok && !slices.Contains(s.quarantined, id) {
				orphans = append(orphans, bt.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load index: %w", err)
	}
	if last != "" {
		s.ids.after(last, now)
	}
	if len(orphans) > 0 {
		s.log.Info("persist: removing unfinished bodies", "keys", len(orphans))
		if err := s.deleteKeys(orphans); err != nil {
			return fmt.Errorf("remove unfinished bodies: %w", err)
		}
	}
	return nil
}

// deleteKeys deletes keys outside the committer (Open, and the staged parts of a body that was
// never appended: keys no request of the committer touches), in as few transactions as fit.
func (s *Store) deleteKeys(keys [][]byte) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return mapErr(err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(k)
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

// adviseLogs marks the mappings of Badger's logs MADV_RANDOM, and drops the value-log pages
// that commits left mapped (advise_linux.go), when adviseEvery has passed since it last did.
func (s *Store) adviseLogs(now time.Time) {
	if now.Sub(s.advisedAt) < adviseEvery {
		return
	}
	s.advisedAt = now
	adviseRandom(s.mapsDir)
	dropBodyPages(s.mapsDir)
}

func (s *Store) kickReaper() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// idGen makes ULIDs: monotonic within a millisecond, so ids sort by arrival. Entropy comes
// from ChaCha8 seeded by crypto/rand: unpredictable enough for ids, without a syscall each.
// The committer takes them as it stages appends, so they follow commit order; last keeps them
// increasing when the clock steps back (and across a restart, from the largest stored id).
type idGen struct {
	mu   sync.Mutex
	ent  *ulid.MonotonicEntropy
	last uint64 // millisecond of the last id
}

func (g *idGen) seed() {
	var seed [32]byte
	rand.Read(seed[:])
	g.ent = ulid.Monotonic(mrand.NewChaCha8(seed), 0)
}

// after makes later ids sort after id when id is a ULID of a time not far ahead of now (a
// caller-given id may be anything).
func (g *idGen) after(id string, now time.Time) {
	u, err := ulid.ParseStrict(id)
	if err != nil || u.Time() > ulid.Timestamp(now.Add(time.Hour)) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The next millisecond: within the same one the entropy would start afresh.
	g.last = max(g.last, u.Time()+1)
}

func (g *idGen) next(t time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := max(ulid.Timestamp(t), g.last)
	for {
		id, err := ulid.New(ms, g.ent)
		if err == nil {
			g.last = ms
			return id.String()
		}
		ms++ // entropy ran out within this millisecond
	}
}
