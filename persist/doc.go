// Package persist is the durable webhook queue on Badger, shared by the relay (one queue per
// endpoint) and the agent (one queue per route). It exists so that "accepted" and
// "acked" can mean "on disk": Append returns only after an fsync.
//
// # Writes: one committer
//
// Every write (Append and each state change) is a request to one committer goroutine. It takes
// whatever requests are waiting, checks them in order against the in-memory index plus the
// changes already staged in the batch (ErrExists, quota, state rules), writes them into one
// Badger transaction (a new one whenever Badger answers ErrTxnTooBig) and commits it. Badger
// runs with SyncWrites=true, so each commit fsyncs the value log and the memtable WAL; many
// callers share that fsync (group commit). SyncWrites=false plus db.Sync was not used: Sync
// only syncs the current value-log file and memtable, so a batch that made Badger rotate either
// could lose its tail on power loss. Callers get their answer, and the index changes, only after
// the commit; a change staged but not yet committed makes its record "busy", which Lease skips.
// When fewer requests wait than the last round suggests are active, the committer yields a
// few times to producers that are runnable, then blocks a little (at most half the last
// commit's duration) for the rest, so that steady producers share one batch instead of
// splitting into two halves that take turns (commit.go, collect).
//
// # Keys
//
//	"\x00format"            store format version ("3"), written on first open, checked on every open
//	"m" + id                metadata of one record (codec.go), small, rewritten on state changes
//	"b" + id + "/" + seg    body, in segments of at most 512 KiB (seg is 4 bytes big-endian);
//	                        a body streamed past 1 MiB (BodyWriter) is instead the file
//	                        bodies/<hex> that its metadata names ("+<hex>", bodyfile.go);
//	                        format 2 kept those as segments under "!<hex>", still read
//	"r" + uvarint len(queue) + queue + id
//	                        present while the record is Ready on disk (leased ones too); value
//	                        its next attempt and receipt time (format 2; Open migrates format 1)
//	"a" + uvarint len(queue) + queue + id
//	                        the same while it is Acked
//
// The relay's consumer groups keep a copy per group (copies.go): records of their own, written
// in one commit by AppendCopies, whose ids add a suffix to the webhook's.
//
// Ids are ULIDs (or the id the agent got from the relay): unique, sortable by arrival, and
// limited to URL-safe characters, so "/" never occurs in one.
//
// # Memory
//
// Open loads an index (state, next attempt, size, times; no headers or bodies) of every record
// but the ready ones beyond a window of windowMax per queue and the acked ones: those stay on
// disk, counted in the queue's figures; cold ready ones are loaded in id order through their
// "r" keys as the window empties (cold.go), so memory does not grow with a backlog. Finished
// records are held until swept, which the committer asks for early when they are many; once
// nothing but a replay, sweep or delete will change one (with HoldUnreported: once its outcome
// is reported), the index keeps only its times, sizes and kind (doneRec, ~115 bytes). Per queue the index keeps
// the ready records of the window in two heaps, due ones by id (oldest first) and future ones
// by next attempt, plus counts for quotas and Stats. Leases exist only there, with a reaper
// that returns expired ones; after a crash every leased record is simply ready again.
//
// # Disk
//
// Finished records are deleted after KeepDone or beyond KeepDoneMax by a background sweep,
// followed by value-log GC; after bulk deletes also a memtable flush and an LSM flatten, which
// Badger needs before it knows what to give back (gc.go). Append refuses with ErrDiskFull
// below Options.MinFree free bytes: Badger writes through mmap, so it is better not to let it
// meet a full disk.
package persist
