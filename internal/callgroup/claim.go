package callgroup

import (
	"context"

	"github.com/herdcache/herd/internal/check"
)

// Calls that the caller runs itself, and joining a call without starting one.
//
// A batch (one function call for many keys) does not fit [Group.Do], which
// runs one function per key. Claim records a call of a key that the caller
// runs and finishes by hand, so that callers of [Group.Do] for that key join
// it as they would join any call; Join waits on the call of a key in flight
// without ever starting one.

// A Claim is a call of one key that its claimant runs itself: callers of
// [Group.Do] and [Group.Join] for the key join it until [Claim.Finish].
// The claimant must call Finish exactly once, also when its work panics
// (defer it): until then the key stays in flight.
type Claim[K comparable, V any, E Errors] struct {
	g        *Group[K, V, E]
	key      K
	c        *call[V]
	own      call[V] // c, for a claim that was made free
	finished bool    // guarded by g.mu
}

// Claim records a call of key that the caller runs itself, and returns it;
// it returns nil, and records nothing, when a call of key is in flight (see
// [Group.Join]). The claim has no waiter of its own: the claimant waits with
// [Claim.Wait] if it wants the result. A claimed call is never cancelled
// when its waiters leave, whatever [Group.CancelWhenAbandoned] says: its
// claimant runs it to the end.
func (g *Group[K, V, E]) Claim(key K) *Claim[K, V, E] {
	cl := new(Claim[K, V, E])
	if !g.ClaimInto(key, cl) {
		return nil
	}
	return cl
}

// ClaimInto is [Group.Claim] into cl, a zero Claim that the caller
// provides (for example one of a slice, so that a batch's claims cost one
// allocation): it reports whether it recorded the call.
func (g *Group[K, V, E]) ClaimInto(key K, cl *Claim[K, V, E]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.calls.Get(key); ok {
		return false
	}
	cl.g, cl.key, cl.c = g, key, &cl.own
	cl.own.mu = &g.mu // done is made when a caller waits (see joinLocked)
	g.addLocked(key, cl.c)
	return true
}

// Key returns the key of the claimed call.
func (cl *Claim[K, V, E]) Key() K { return cl.key }

// Wait waits for the claimed call's result as one of its callers, on ctx: it
// returns ctx.Err() if ctx ends first (the call goes on). shared reports
// whether another caller joined the call. A claimant that waits after its
// Publish gets the result without waiting.
func (cl *Claim[K, V, E]) Wait(ctx context.Context) (v V, shared bool, err error) {
	check.Context(ctx, "flight")
	g, c := cl.g, cl.c
	g.mu.Lock()
	if c.published {
		shared = c.dups > 0
		g.mu.Unlock()
		return c.val, shared, c.err
	}
	c.waiters++
	if c.done == nil {
		c.done = make(chan struct{})
	}
	g.mu.Unlock()
	return g.wait(ctx, cl.key, c)
}

// Publish gives v and err as the call's result at once, as [Publish] does
// for a call of [Group.Do]: waiting callers get it, and callers that join
// until Finish get it without starting a new call. It returns the callers'
// copy of v, which nothing modifies from then on. It must be called from
// the goroutine that calls Finish, at most once, and before Finish; later
// calls do nothing and return nil.
func (cl *Claim[K, V, E]) Publish(v V, err error) *V {
	return cl.publish(v, err, false)
}

// Release is [Claim.Publish] of a result that callers arriving afterwards
// must not share, such as a failure: the key is free at once for a new call
// (a new Claim or Do of it), and Finish then frees nothing.
func (cl *Claim[K, V, E]) Release(v V, err error) {
	cl.publish(v, err, true)
}

func (cl *Claim[K, V, E]) publish(v V, err error, release bool) *V {
	g, c := cl.g, cl.c
	g.mu.Lock()
	if c.published { // also after Finish, which publishes
		g.mu.Unlock()
		return nil
	}
	if release {
		g.forgetLocked(cl.key, c)
	}
	c.val, c.err = v, err
	c.published = true
	done := c.done
	g.mu.Unlock()
	if done != nil {
		close(done)
	}
	return &c.val
}

// Finish ends the call: the key is free for a new call, and, unless Publish
// gave the result already, every waiter gets v and err. Calls after the
// first do nothing.
func (cl *Claim[K, V, E]) Finish(v V, err error) {
	g, c := cl.g, cl.c
	g.mu.Lock()
	if cl.finished {
		g.mu.Unlock()
		return
	}
	cl.finished = true
	g.forgetLocked(cl.key, c)
	var done chan struct{}
	if !c.published {
		c.val, c.err = v, err
		c.published = true
		done = c.done
	}
	g.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// A Waiter is a caller's place in a call of a [Group] that it joined with
// [Group.Join].
type Waiter[K comparable, V any, E Errors] struct {
	g   *Group[K, V, E]
	key K
	c   *call[V]
}

// JoinOrClaim joins the call of key in flight, as [Group.Join] does, or
// records a call of key into cl, as [Group.ClaimInto] does, under one lock:
// it returns the Waiter of the call it joined, or nil when it claimed cl.
func (g *Group[K, V, E]) JoinOrClaim(key K, cl *Claim[K, V, E]) *Waiter[K, V, E] {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls.Get(key); ok {
		joinLocked(c)
		return &Waiter[K, V, E]{g: g, key: key, c: c}
	}
	cl.g, cl.key, cl.c = g, key, &cl.own
	cl.own.mu = &g.mu // done is made when a caller waits (see joinLocked)
	g.addLocked(key, cl.c)
	return nil
}

// Join joins the call of key in flight, if any, without starting one: it
// returns nil when no call of key is in flight. The caller must then call
// [Waiter.Wait] once, as a caller of [Group.Do] waits.
func (g *Group[K, V, E]) Join(key K) *Waiter[K, V, E] {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.calls.Get(key)
	if !ok {
		return nil
	}
	joinLocked(c)
	return &Waiter[K, V, E]{g: g, key: key, c: c}
}

// Wait waits for the result of the joined call, as [Group.Do] does: it
// returns ctx.Err() if ctx ends first, and the call goes on for the others.
func (w *Waiter[K, V, E]) Wait(ctx context.Context) (v V, shared bool, err error) {
	check.Context(ctx, "flight")
	return w.g.wait(ctx, w.key, w.c)
}
