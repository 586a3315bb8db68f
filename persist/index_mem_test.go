package persist

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A finished record stays listable for KeepDone (up to KeepDoneMax of them, and as many dead
// letters), so a busy store holds thousands in its index. Only listings, sweeps and replays
// use them, and all of those read the record from disk anyway: each must cost the index little
// memory and the GC few objects. As full entries (an entry and its slots in two maps) they
// took 293 bytes each here; held compactly (doneRec), 103.
func TestFinishedRecordsHeldCompactly(t *testing.T) {
	const n = 20000
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold_unreported=%v", hold), func(t *testing.T) {
			ids := make([]string, n) // the ids count apart: the index keeps the caller's string
			for i := range ids {
				ids[i] = fmt.Sprintf("01J%023d", i)
			}
			now := time.Now()
			before := liveHeap()
			x := newIndex(hold)
			for i, id := range ids {
				state := StateDelivered
				if i%4 == 0 {
					state = StateDead
				}
				x.insertLocked(id, summary{state: state, received: now, finished: now, size: 1100,
					reported: true, queue: "q"}, now)
			}
			per := float64(liveHeap()-before) / n
			runtime.KeepAlive(x)
			runtime.KeepAlive(ids)
			t.Logf("%.0f bytes per finished record", per)
			if per > 120 {
				t.Errorf("the index holds %.0f bytes per finished record, want at most 120", per)
			}
			if x.finished != n || x.queues["q"].dead != n/4 {
				t.Errorf("counted %d finished, %d dead; want %d, %d", x.finished, x.queues["q"].dead, n, n/4)
			}
		})
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
