package flight

import "context"

// Calls that the caller runs itself, and joining a call without starting one.
//
// A batch (one function call for many keys) does not fit [Group.Do], which
// runs one function per key on a goroutine of its own. Claim records a call
// of a key that the caller runs and finishes by hand, so that callers of
// [Group.Do] for that key join it as they would join any call; Join waits on
// the call of a key in flight without ever starting one.

// A Claim is a call of one key that its claimant runs itself: callers of
// [Group.Do] and [Group.Join] for the key join it until [Claim.Finish].
// The claimant must call Finish exactly once, also when its work panics
// (defer it): until then the key stays in flight.
type Claim[K comparable, V any] struct {
	g        *Group[K, V]
	key      K
	c        *call[V]
	finished bool // guarded by g.mu
}

// Claim records a call of key that the caller runs itself, and returns it;
// it returns nil, and records nothing, when a call of key is in flight (see
// [Group.Join]). The claim has no waiter of its own: the claimant waits with
// [Claim.Wait] if it wants the result. Under [Group.CancelWhenAbandoned], a
// claimed call whose waiters all leave frees its key as any call does; the
// claimant is not interrupted, and its Finish then frees nothing.
func (g *Group[K, V]) Claim(key K) *Claim[K, V] {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.m[key]; ok {
		return nil
	}
	if g.m == nil {
		g.m = make(map[K]*call[V])
	}
	c := &call[V]{done: make(chan struct{})}
	if g.CancelWhenAbandoned {
		c.cancel = func() {}
	}
	g.m[key] = c
	g.peak = max(g.peak, len(g.m))
	return &Claim[K, V]{g: g, key: key, c: c}
}

// Wait waits for the claimed call's result as one of its callers, on ctx: it
// returns ctx.Err() if ctx ends first (the call goes on). shared reports
// whether another caller joined the call.
func (cl *Claim[K, V]) Wait(ctx context.Context) (v V, shared bool, err error) {
	if ctx == nil {
		panic("flight: nil Context")
	}
	cl.g.mu.Lock()
	cl.c.waiters++
	cl.g.mu.Unlock()
	return cl.g.wait(ctx, cl.key, cl.c)
}

// Publish gives v as the call's result at once, as [Publish] does for a
// call of [Group.Do]: waiting callers get it, and callers that join until
// Finish get it without starting a new call. It must be called from the
// goroutine that calls Finish, at most once, and before Finish; later calls
// do nothing.
func (cl *Claim[K, V]) Publish(v V) {
	c := cl.c
	if c.published { // also after Finish, which publishes
		return
	}
	c.val, c.err = v, nil
	c.published = true
	close(c.done)
}

// Finish ends the call: the key is free for a new call, and, unless Publish
// gave the result already, every waiter gets v and err. Calls after the
// first do nothing.
func (cl *Claim[K, V]) Finish(v V, err error) {
	g, c := cl.g, cl.c
	g.mu.Lock()
	if cl.finished {
		g.mu.Unlock()
		return
	}
	cl.finished = true
	g.forgetLocked(cl.key, c)
	g.mu.Unlock()
	if !c.published {
		c.val, c.err = v, err
		c.published = true
		close(c.done)
	}
}

// A Waiter is a caller's place in a call of a [Group] that it joined with
// [Group.Join].
type Waiter[K comparable, V any] struct {
	g   *Group[K, V]
	key K
	c   *call[V]
}

// Join joins the call of key in flight, if any, without starting one: it
// returns nil when no call of key is in flight. The caller must then call
// [Waiter.Wait] once, as a caller of [Group.Do] waits.
func (g *Group[K, V]) Join(key K) *Waiter[K, V] {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.m[key]
	if !ok {
		return nil
	}
	joinLocked(c)
	return &Waiter[K, V]{g: g, key: key, c: c}
}

// Wait waits for the result of the joined call, as [Group.DoShared] does:
// it returns ctx.Err() if ctx ends first, and the call goes on for the
// others.
func (w *Waiter[K, V]) Wait(ctx context.Context) (v V, shared bool, err error) {
	if ctx == nil {
		panic("flight: nil Context")
	}
	return w.g.wait(ctx, w.key, w.c)
}
