package natsstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/fanout"
	"github.com/herdcache/herd/store"
)

// beginMany checks what every call on many keys checks first (a nil
// context panics; a closed store or a lost connection fails at once) and
// returns ctx, also ended when the connection drops. The error is the one
// every key gets.
func (s *Store[T]) beginMany(ctx context.Context) (context.Context, context.CancelFunc, error) {
	check.Context(ctx, "natsstore")
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	ctx, done, ok := s.conn.attach(ctx)
	if !ok {
		return nil, nil, ErrUnavailable
	}
	return ctx, done, nil
}

// concurrently calls fn(i) for every i below n, at most [BulkConcurrency]
// at a time, and returns once all have returned.
func (s *Store[T]) concurrently(n int, fn func(i int)) { fanout.Each(n, s.bulk, fn) }

// GetMany reads keys with concurrent gets, at most [BulkConcurrency] at a
// time (16 by default), and returns the live entries it found; a key missing
// from the map has no live entry. Duplicate keys are read once. When some
// gets fail (or ctx ends before they run), it returns the entries it did
// read with an error that counts the keys it could not read and wraps the
// first failure.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	check.Context(ctx, "natsstore")
	if s.closed.Load() {
		return nil, fmt.Errorf("natsstore: get many: %w", ErrClosed)
	}
	unique := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			unique = append(unique, k)
		}
	}
	found := make(map[string]store.Entry[T], len(unique))
	if len(unique) == 0 {
		return found, nil
	}
	reads := s.GetVersions(ctx, unique)
	var first error
	failures := 0
	for i, r := range reads {
		switch {
		case r.Err != nil:
			failures++
			if first == nil {
				first = r.Err
			}
		case r.Found:
			found[unique[i]] = r.Entry
		}
	}
	if first != nil {
		return found, fmt.Errorf("natsstore: get many: %d of %d keys not read: %w", failures, len(unique), first)
	}
	return found, nil
}

// GetVersions is [Store.GetVersion] for each of keys, in their order, by
// concurrent gets, at most [BulkConcurrency] at a time (16 by default):
// about len(keys)/16 round trips. Each key has its own outcome; when ctx
// ends, the keys not read yet get its error.
func (s *Store[T]) GetVersions(ctx context.Context, keys []string) []store.VersionedRead[T] {
	out := make([]store.VersionedRead[T], len(keys))
	ctx, done, err := s.beginMany(ctx)
	if err != nil {
		for i, k := range keys {
			out[i].Err = fmt.Errorf("natsstore: get %q: %w", k, err)
		}
		return out
	}
	defer done()
	s.concurrently(len(keys), func(i int) {
		r := &out[i]
		if err := ctx.Err(); err != nil {
			r.Err = fmt.Errorf("natsstore: get %q: %w", keys[i], failed(ctx, err))
			return
		}
		r.Entry, r.Version, r.Found, r.Err = s.read(ctx, keys[i])
	})
	return out
}

// publishAll publishes pubs asynchronously, with at most [BulkInFlight] of
// them awaiting their acks at a time, then waits for the acks of the rest:
// about one round trip per BulkInFlight messages. It returns each one's ack
// or error; a message whose ack has not come when ctx ends gets ctx's
// error, and whether it was written is not known. When ctx has no
// deadline, each message waits for its ack for the JetStream context's
// default timeout from its publish, as a single publish would.
func (s *Store[T]) publishAll(ctx context.Context, pubs []pub) ([]*jetstream.PubAck, []error) {
	acks := make([]*jetstream.PubAck, len(pubs))
	errs := make([]error, len(pubs))
	futures := make([]jetstream.PubAckFuture, len(pubs))
	var (
		timeout time.Duration
		sent    []time.Time
	)
	if _, ok := ctx.Deadline(); !ok {
		timeout, sent = s.js.Options().DefaultTimeout, make([]time.Time, len(pubs))
	}
	wait := func(i int) {
		f := futures[i]
		if f == nil {
			return
		}
		var expired <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(time.Until(sent[i].Add(timeout)))
			defer t.Stop()
			expired = t.C
		}
		select {
		case acks[i] = <-f.Ok():
		case errs[i] = <-f.Err():
		case <-ctx.Done():
			errs[i] = ctx.Err()
		case <-expired:
			errs[i] = context.DeadlineExceeded
		}
	}
	for i := range pubs {
		if i >= s.inFlight {
			wait(i - s.inFlight)
		}
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		p := &pubs[i]
		if err := s.fits(p.m); err != nil {
			errs[i] = err
			continue
		}
		f, err := s.js.PublishMsgAsync(p.m, p.opts...)
		if errors.Is(err, nats.ErrMaxPayload) {
			err = fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		futures[i] = f
		if sent != nil {
			sent[i] = time.Now()
		}
	}
	for i := max(len(pubs)-s.inFlight, 0); i < len(pubs); i++ {
		wait(i)
	}
	return acks, errs
}

// WriteIf makes each write as [Store.SetIf] or [Store.DeleteIf] does, in
// order, by asynchronous publishes that each carry the expected last
// sequence of their key's subject, at most [BulkInFlight] awaiting their
// acks at a time (256 by default), and one wait for the acks: about one
// round trip for up to 256 writes. The server checks and writes each one
// atomically. It returns, for each write, nil, an error wrapping
// [store.ErrConflict], or the failure that kept the write from being
// acknowledged (what it wrote is then not known).
func (s *Store[T]) WriteIf(ctx context.Context, writes []store.ConditionalWrite[T]) []error {
	errs := make([]error, len(writes))
	fail := func(i int, op string, err error) {
		errs[i] = fmt.Errorf("natsstore: %s %q: %w", op, writes[i].Key, err)
	}
	ctx, done, err := s.beginMany(ctx)
	if err != nil {
		for i, w := range writes {
			if w.Delete {
				fail(i, "delete", err)
			} else {
				fail(i, "set", err)
			}
		}
		return errs
	}
	defer done()
	pubs := make([]pub, 0, len(writes))
	idx := make([]int, 0, len(writes))
	for i := range writes {
		w := &writes[i]
		v := w.Version
		var p pub
		if w.Delete {
			p = s.deletePub(w.Key, &v)
		} else if p, err = s.setPub(w.Key, &w.Entry, &v); err != nil {
			fail(i, "set", err)
			continue
		}
		pubs = append(pubs, p)
		idx = append(idx, i)
	}
	_, perrs := s.publishAll(ctx, pubs)
	for j, i := range idx {
		if perrs[j] != nil {
			fail(i, pubs[j].op, conflict(ctx, perrs[j]))
		}
	}
	return errs
}

// createPub is the creation of lock key lk for ttl over the subject's last
// message at sequence after (0: the subject has none), as KeyValue.Create
// publishes it.
func (s *Store[T]) createPub(lk string, after uint64, ttl time.Duration) pub {
	return pub{op: "lock", m: &nats.Msg{Subject: s.prefix + lk, Data: lockValue}, opts: []jetstream.PublishOpt{
		jetstream.WithExpectLastSequencePerSubject(after), jetstream.WithMsgTTL(ceilSecond(ttl)),
	}}
}

// TryLockMany is [Store.TryLock] for each of keys, in their order: an
// asynchronous create of each lock key, at most [BulkInFlight] awaiting
// their acks at a time, and one wait for the acks. A key whose lock key
// holds a message is read (at most [BulkConcurrency] at a time) and, if the
// message is the marker of a released or expired lock, created again over
// it, as KeyValue.Create does: about one round trip when every key is free,
// two more (the reads, then the creates) when some are held or over a
// marker. Each result holds the key's lock, or an error
// wrapping [store.ErrLocked] when another owner holds it (contention, on a
// single server or a cluster, is never a failure), or the failure that
// kept the store from answering for the key ([ErrNoTTL] on a bucket
// without per-key TTL).
func (s *Store[T]) TryLockMany(ctx context.Context, keys []string, ttl time.Duration) []store.LockResult {
	out := make([]store.LockResult, len(keys))
	fail := func(i int, err error) { out[i].Err = fmt.Errorf("natsstore: lock %q: %w", keys[i], err) }
	ctx, done, err := s.beginMany(ctx)
	if err == nil && !s.ttl {
		done()
		err = ErrNoTTL
	}
	if err != nil {
		for i := range keys {
			fail(i, err)
		}
		return out
	}
	defer done()
	lks := make([]string, len(keys))
	pubs := make([]pub, len(keys))
	for i, k := range keys {
		token, _ := encodeKey(k)
		lks[i] = "l." + token
		pubs[i] = s.createPub(lks[i], 0, ttl)
	}
	take := func(i int, ack *jetstream.PubAck) {
		out[i].Lock = &lock[T]{s: s, key: keys[i], lk: lks[i], token: ack.Sequence, rev: ack.Sequence, id: s.lockIDs.Add(1)}
	}
	acks, errs := s.publishAll(ctx, pubs)
	var over []int // keys whose lock key holds a message: a lock, or the marker of one
	for i := range keys {
		switch err := errs[i]; {
		case err == nil:
			take(i, acks[i])
		case errors.Is(err, jetstream.ErrKeyExists):
			over = append(over, i)
		case contended(err):
			fail(i, store.ErrLocked)
		default:
			fail(i, failed(ctx, err))
		}
	}
	if len(over) == 0 {
		return out
	}
	after := make([]uint64, len(over))
	free := make([]bool, len(over))
	rerrs := make([]error, len(over))
	s.concurrently(len(over), func(j int) {
		m, err := s.stream.GetLastMsgForSubject(ctx, s.prefix+lks[over[j]])
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound): // gone since, marker and all
			free[j] = true
		case err != nil:
			rerrs[j] = err
		case m.Header.Get(kvOp) != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "":
			free[j], after[j] = true, m.Sequence
		}
	})
	again := make([]pub, 0, len(over))
	idx := make([]int, 0, len(over))
	for j, i := range over {
		switch {
		case rerrs[j] != nil:
			fail(i, failed(ctx, rerrs[j]))
		case !free[j]:
			fail(i, store.ErrLocked)
		default:
			again = append(again, s.createPub(lks[i], after[j], ttl))
			idx = append(idx, i)
		}
	}
	acks, errs = s.publishAll(ctx, again)
	for j, i := range idx {
		switch err := errs[j]; {
		case err == nil:
			take(i, acks[j])
		case contended(err):
			fail(i, store.ErrLocked)
		default:
			fail(i, failed(ctx, err))
		}
	}
	return out
}

// ExtendMany is Extend for each of locks, which TryLock or TryLockMany of
// this store handed out, in their order: an asynchronous republish of each
// lock key with the new TTL, conditioned on the lease's revision, at most
// [BulkInFlight] awaiting their acks at a time, and one wait for the acks.
// Each error is nil, one wrapping [store.ErrNotHeld] once another owner
// took over, or the failure that kept the store from answering for the
// lock. Each lock is held for the call as by its own Extend, so a lock's
// Extend or Unlock waits for a batch that has it.
func (s *Store[T]) ExtendMany(ctx context.Context, locks []store.Lock, ttl time.Duration) []error {
	return s.eachLock(ctx, "extend", locks, func(l *lock[T]) pub {
		return pub{op: "extend", m: &nats.Msg{Subject: s.prefix + l.lk, Data: lockValue}, opts: []jetstream.PublishOpt{
			jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(ceilSecond(ttl)),
		}}
	}, func(l *lock[T], ack *jetstream.PubAck) { l.rev = ack.Sequence })
}

// UnlockMany is Unlock for each of locks, which TryLock or TryLockMany of
// this store handed out, in their order: an asynchronous purge of each lock
// key, conditioned on the lease's revision, at most [BulkInFlight] awaiting
// their acks at a time, and one wait for the acks. Each error is nil, one
// wrapping [store.ErrNotHeld] once another owner took over (or the lock was
// released), or the failure that kept the store from answering for the
// lock (its lease then runs out by itself).
func (s *Store[T]) UnlockMany(ctx context.Context, locks []store.Lock) []error {
	return s.eachLock(ctx, "unlock", locks, func(l *lock[T]) pub {
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(l.rev)}
		if s.ttl {
			opts = append(opts, jetstream.WithMsgTTL(time.Second)) // see lock.Unlock
		}
		return pub{op: "unlock", m: purgeMsg(s.prefix + l.lk), opts: opts}
	}, func(l *lock[T], _ *jetstream.PubAck) { l.rev = 0 })
}

// eachLock publishes msg(l) for each of locks, and calls done(l, ack) for
// those the server acknowledged.
func (s *Store[T]) eachLock(ctx context.Context, op string, locks []store.Lock, msg func(*lock[T]) pub, done func(*lock[T], *jetstream.PubAck)) []error {
	errs := make([]error, len(locks))
	ctx, end, err := s.beginMany(ctx)
	ls := make([]*lock[T], len(locks))
	var order []int
	seen := make(map[*lock[T]]struct{}, len(locks))
	for i, x := range locks {
		l, ok := x.(*lock[T])
		_, twice := seen[l]
		switch {
		case !ok || l.s != s:
			errs[i] = fmt.Errorf("natsstore: %s: a %T is not a lock of this store", op, x)
		case twice:
			errs[i] = fmt.Errorf("natsstore: %s %q: the lock is given twice", op, l.key)
		case err != nil:
			errs[i] = fmt.Errorf("natsstore: %s %q: %w", op, l.key, err)
		default:
			seen[l] = struct{}{}
			ls[i] = l
			order = append(order, i)
		}
	}
	if err != nil {
		return errs
	}
	defer end()
	// Each lock's mutex is held across the batch, as its own Extend and
	// Unlock hold it across theirs, and taken in the order the locks were
	// made, so that two batches that share locks cannot deadlock.
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ls[a].id, ls[b].id) })
	for _, i := range order {
		ls[i].mu.Lock()
	}
	defer func() {
		for _, i := range order {
			ls[i].mu.Unlock()
		}
	}()
	pubs := make([]pub, 0, len(order))
	idx := make([]int, 0, len(order))
	for _, i := range order {
		if ls[i].rev == 0 { // released by this owner
			errs[i] = ls[i].fail(ctx, op, jetstream.ErrKeyExists)
			continue
		}
		pubs = append(pubs, msg(ls[i]))
		idx = append(idx, i)
	}
	acks, perrs := s.publishAll(ctx, pubs)
	for j, i := range idx {
		if perrs[j] != nil {
			errs[i] = ls[i].fail(ctx, op, perrs[j])
		} else {
			done(ls[i], acks[j])
		}
	}
	return errs
}
