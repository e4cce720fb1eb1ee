package tiered

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRepairBatch is the [RepairBatch] of a store built without it.
const DefaultRepairBatch = 1000

// A repairer runs the revalidation of the near tier that a Gap asks for,
// on a goroutine of its own, so that the stream's goroutine only starts
// it. A Gap starts a new repair and a Down or an All cancels the running
// one; a repair cancelled at a Down leaves the copies it had not yet
// revalidated in place, as the next Gap revalidates every copy present.
type repairer struct {
	run     func(ctx context.Context, before int64)
	timeout time.Duration // of each far call

	mu      sync.Mutex
	stop    context.CancelFunc // of the running repair; nil if none
	pending bool               // a repair started and did not finish
	closed  bool
	wg      sync.WaitGroup
}

func newRepairer(run func(ctx context.Context, before int64), timeout time.Duration) *repairer {
	return &repairer{run: run, timeout: timeout}
}

// start cancels the running repair, if any, and starts one of the copies
// fetched before the near tier's clock read before.
func (r *repairer) start(before int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelLocked()
	if r.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.pending = cancel, true
	r.wg.Go(func() {
		defer cancel()
		r.run(ctx, before)
		if ctx.Err() == nil {
			r.mu.Lock()
			if r.stop != nil && ctx.Err() == nil {
				r.pending = false
			}
			r.mu.Unlock()
		}
	})
}

// resume starts a repair again if one was cut short (by a Down) before it
// finished: the copies it had not reached are still to revalidate.
func (r *repairer) resume(before int64) {
	r.mu.Lock()
	pending := r.pending && r.stop == nil
	r.mu.Unlock()
	if pending {
		r.start(before)
	}
}

// cancel asks the running repair, if any, to stop; it does not wait.
func (r *repairer) cancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelLocked()
}

func (r *repairer) cancelLocked() {
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
}

// close cancels the running repair and waits for every repair to return;
// none starts after it.
func (r *repairer) close() {
	r.mu.Lock()
	r.closed = true
	r.cancelLocked()
	r.mu.Unlock()
	r.wg.Wait()
}

// repair revalidates the near copies that may have missed a change while
// the stream was away: every copy that a hit could serve, present when the
// Gap was handled (fetched before the clock read before). It reads them
// again from the far tier, batch keys per call, and makes the near tier
// agree with what it read, as a far read does: a key found is kept with
// the entry read (a new copy, served NearTTL from this read), a key gone
// is dropped, and so is a key whose read failed, unless the repair was
// cancelled (by a Down: the next Gap revalidates it). A change or a write
// of the key while its read is in flight wins, as for any far read.
//
// Copies kept past their NearTTL as the fallback of failed loads are
// dropped rather than read again: they are no hits.
func (s *Store[T]) repair(ctx context.Context, before int64) {
	s.repairsRun.Add(1)
	var keys, fallbacks []string
	for k, it := range s.near.All() {
		if it.until > before {
			keys = append(keys, k)
		} else {
			fallbacks = append(fallbacks, k)
		}
	}
	// A copy kept past its NearTTL as a fallback is not worth a far read:
	// it goes, as it may have changed.
	for _, k := range fallbacks {
		s.flights.invalidate(k, func() {
			if it, ok := s.near.GetIfPresent(k); ok && it.until <= before {
				s.near.Invalidate(k)
			}
		})
	}
	for batch := range slices.Chunk(keys, s.repairBatch) {
		if ctx.Err() != nil || s.closed.Load() {
			return
		}
		s.repairBatchOf(ctx, batch)
	}
}

// repairBatchOf revalidates the near copies of keys with one far read.
func (s *Store[T]) repairBatchOf(ctx context.Context, keys []string) {
	s.reread(ctx, keys, &s.repairReads)
}

// checkEchoes re-reads keys whose copies a change without a version left
// in place (see checker).
func (s *Store[T]) checkEchoes(ctx context.Context, keys []string) {
	s.reread(ctx, keys, &s.echoChecks)
}

// reread reads keys from the far tier in one call and makes the near tier
// agree with what it read, as a far read does. It counts the keys in
// count once they are registered as in flight.
func (s *Store[T]) reread(ctx context.Context, keys []string, count *atomic.Uint64) {
	tickets := make([]ticket, len(keys))
	for i, k := range keys {
		tickets[i] = s.flights.begin(k)
	}
	count.Add(uint64(len(keys)))
	start := s.clock.Exact()
	rctx, cancel := context.WithTimeout(ctx, s.repairs.timeout)
	found, err := s.getManyFar(rctx, keys)
	cancel()
	for i, k := range keys {
		e, ok := found[k]
		switch {
		case ok:
			s.fill(k, tickets[i], e, start)
		case err == nil:
			s.repairDrops.Add(1)
			s.absent(k, tickets[i])
		case ctx.Err() != nil:
			s.flights.finish(k, tickets[i], false, nil)
		default:
			s.repairDrops.Add(1)
			s.absent(k, tickets[i])
		}
	}
}

// A checker re-reads, in the background and in bulk, the keys whose near
// copy a change without a version left in place as the echo of this
// instance's write. A stream that reports keys only (Redis) may report
// several writes of a key as one change (Redis's broadcast tracking sends
// one invalidation per key per turn of its event loop): the change taken
// for the echo may also stand for a later write by another client. The
// re-read, which begins after the change arrived, fills the near tier with
// what the far tier holds, so such a copy is served at most one far read
// longer than the stream's delivery time.
type checker struct {
	run func(ctx context.Context, keys []string)

	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func newChecker(run func(ctx context.Context, keys []string), batch int) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checker{run: run, pending: make(map[string]struct{}), wake: make(chan struct{}, 1), stop: cancel}
	c.wg.Go(func() { c.loop(ctx, batch) })
	return c
}

// add queues key for a re-read.
func (c *checker) add(key string) {
	c.mu.Lock()
	c.pending[key] = struct{}{}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checker) loop(ctx context.Context, batch int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			keys := make([]string, 0, min(len(c.pending), batch))
			for k := range c.pending {
				if len(keys) == batch {
					break
				}
				keys = append(keys, k)
				delete(c.pending, k)
			}
			c.mu.Unlock()
			if len(keys) == 0 || ctx.Err() != nil {
				break
			}
			c.run(ctx, keys)
		}
	}
}

// close stops the checker and waits for its goroutine.
func (c *checker) close() {
	c.stop()
	c.wg.Wait()
}
