package persist

import (
	"errors"
	"log/slog"
	"time"
)

// State is where a record stands. Leased is in memory only: on disk it is still Ready.
type State uint8

const (
	StateReady     State = 1 // waiting to be leased once NextAttempt is due
	StateLeased    State = 2 // handed out by Lease, until Ack/Nack/Complete/Release or lease expiry
	StateAcked     State = 3 // relay only: the agent holds it; waiting for the agent's report
	StateDelivered State = 4
	StateDead      State = 5
)

// Header is one header line; a list keeps order and repeated names.
type Header struct {
	Name, Value string
}

// MaxDeliveries is how many attempt outcomes a record keeps (the newest).
const MaxDeliveries = 10

// Delivery is one attempt's outcome, kept with the record (the last MaxDeliveries of them).
type Delivery struct {
	At     time.Time
	Status int    // HTTP status, 0 when there was none
	Millis int64  // attempt duration
	Error  string // "" on success
	// The target's answer, as far as the caller records it (the agent: all headers and the
	// first 64 KiB of the body; the relay: for exposing routes, the first 4 KiB). Nil: none.
	ResponseHeaders []Header
	ResponseBody    []byte
}

// Record is one stored webhook.
type Record struct {
	ID          string // assigned by Append when empty (ULID); kept when set (the agent uses the relay's)
	Queue       string // endpoint name
	ReceivedAt  time.Time
	Method      string
	Path        string
	Query       string
	Headers     []Header
	Body        []byte // nil in List's records; Lease and Get fill it (Lease not over Options.LeaseBodyMax)
	BodyLen     int64  // the body's length in bytes, also where Body is left out (set by Append)
	Replay      bool   // the next delivery is a replay (hookrelay-replay: 1)
	State       State
	Attempts    int
	NextAttempt time.Time
	Deliveries  []Delivery
	Reported    bool      // agent only: the final outcome was reported to the relay
	DeadReason  string    // why it is dead ("max attempts", "max age", "retention", a status…); on a Delivered record, why it was finished undelivered (CompleteFiltered)
	Size        int64     // stored bytes counted against the quota (body + headers)
	FinishedAt  time.Time // when it became Delivered or Dead; zero otherwise
	// Holder (relay) is the agent id whose session acked it last: the agent the relay waits
	// for an outcome from (see the relay's outcome_timeout). "" before an ack.
	Holder string
	// Lease is the token of the lease that handed this record out (Lease, LeaseHead); 0
	// otherwise. ReleaseLease and ExtendLease act only while that lease is the current one,
	// so a holder whose lease expired cannot touch a later holder's.
	Lease uint64
	// Groups (relay) is each consumer group's state of the webhook, as the relay's queue
	// reports it (Get, List); State is then the least advanced of them. The store never
	// sets it. Nil elsewhere.
	Groups map[string]State

	parts string // the staging name its body's segments have, when not its id (parts.go)
}

// Options configures a Store. Zero values mean the defaults given.
type Options struct {
	Dir    string
	Logger *slog.Logger // nil = slog.Default()
	// Small selects the small-memory Badger profile (agent): ~8 MiB memtables ×2, 16 MiB
	// value-log files, small caches. Otherwise a larger profile (relay).
	Small bool
	// Quota returns the stored-bytes limit of a queue (0 = none). Nil = no quotas. Counted over
	// records not yet finished (Ready, Leased, Acked).
	Quota func(queue string) int64
	// KeepDone is how long Delivered and Dead records stay listable before they are deleted;
	// default 24h. KeepDoneMax bounds their count; default 10000.
	KeepDone    time.Duration
	KeepDoneMax int
	// KeepDead and KeepDeadMax are the same for Dead records (dead letters), counted apart
	// from delivered ones so that ordinary traffic never evicts them; defaults 7 days and 10000.
	KeepDead    time.Duration
	KeepDeadMax int
	// HoldUnreported (agent) keeps finished records whose outcome was not reported yet
	// (MarkReported) past KeepDone, and tracks them for Unreported; KeepDoneMax still bounds
	// them. Default false (relay): nobody reports, and Unreported returns none.
	HoldUnreported bool
	// GCInterval is how often value-log GC and the retention sweep run; default 1m.
	GCInterval time.Duration
	// MinFree is the free space the filesystem must keep: below it Append answers ErrDiskFull
	// (Badger writes through mmap, so a really full disk would crash it rather than fail a
	// write). Default 64 MiB with Small, else 256 MiB; negative disables the check.
	MinFree int64
	// valueDir puts Badger's value log in another directory (tests only: a filesystem that
	// fails writes, for TestValueLogWritebackError). "" = Dir.
	valueDir string
	// valueThreshold overrides the Badger value threshold (tests only: a store written before
	// the metadata moved to the value log, for TestOpenStoreWithMetadataInTree). 0 = the default.
	valueThreshold int64
	// LeaseBodyMax: Lease and LeaseHead leave out bodies over this many bytes (Record.Body
	// nil, BodyLen set), for the caller to stream with Body. 0 = never leave one out.
	LeaseBodyMax int64
	// SharedBodies makes the store keep an appended record's Body as given and hand out the
	// bodies it holds in memory without a copy (Lease, LeaseHead): the caller must never change
	// a body once appended or leased. It saves two copies of each small body (agent). Default
	// false: bodies are copied both ways.
	SharedBodies bool
	// dropEvery is how often the committer drops the pages of Badger's mapped files (see
	// dropMapped); 0 = every second, negative = never, not even the value logs' pages every
	// 100 ms (tests only).
	dropEvery time.Duration
	// OnCommit, when set, is called after each group commit with the number of records written
	// in it and how long the synced write took (for metrics).
	OnCommit func(records int, took time.Duration)
}

// Sentinel errors; match them with errors.Is.
var (
	ErrNotFound = errors.New("persist: not found")
	ErrExists   = errors.New("persist: id already stored")
	ErrQuota    = errors.New("persist: queue quota exceeded")
	ErrDiskFull = errors.New("persist: disk full")
	ErrClosed   = errors.New("persist: store closed")
	ErrFormat   = errors.New("persist: unsupported store format")
	ErrState    = errors.New("persist: record is not in a state for that")
	ErrInvalid  = errors.New("persist: invalid record") // empty queue, bad id characters
)

// Filter selects records for List. Zero fields select everything.
type Filter struct {
	Queue string
	State State     // StateLeased selects leased records, StateReady the ready ones not leased
	Since time.Time // received at or after
	Limit int       // default 100
	// Group (relay) selects one consumer group's copies, with that group's state; "" the
	// webhooks across their groups. The store ignores it.
	Group string
}

// QueueStats describes one queue.
type QueueStats struct {
	Queue   string
	Pending int       // Ready + Leased + Acked
	Bytes   int64     // stored bytes of pending records
	Oldest  time.Time // ReceivedAt of the oldest pending record; zero when none
	Dead    int
}

// String names the state: ready, leased, acked, delivered, dead.
// StateRank orders states from least to most advanced, as a webhook's state across its
// consumer groups is shown: accepted (ready) < sent (leased) < acked < dead < delivered.
func StateRank(s State) int {
	switch s {
	case StateReady:
		return 0
	case StateLeased:
		return 1
	case StateAcked:
		return 2
	case StateDead:
		return 3
	}
	return 4
}

func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateLeased:
		return "leased"
	case StateAcked:
		return "acked"
	case StateDelivered:
		return "delivered"
	case StateDead:
		return "dead"
	}
	return "unknown"
}
