package herd

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/herdcache/herd/store"
)

// entryTTL is where SetTTL puts a loader's choice of lifetime.
type entryTTL struct {
	set bool
	ttl time.Duration
}

type entryTTLKey struct{}

// SetTTL sets the TTL of the entry being loaded instead of the cache's [TTL],
// for example from an HTTP Cache-Control max-age. A loader calls it on the
// context it was given. The entry is refreshed in the background after
// [RefreshAfter] if that is shorter than ttl, and kept [StaleIfError] past
// ttl. A ttl of zero or less means: return the value but do not cache it.
// SetTTL reports whether ctx was a loader's context; elsewhere it does nothing.
func SetTTL(ctx context.Context, ttl time.Duration) bool {
	t, ok := ctx.Value(entryTTLKey{}).(*entryTTL)
	if ok {
		t.set, t.ttl = true, ttl
	}
	return ok
}

// newEntry builds the entry for a value loaded at now; keep is false when
// the loader asked for it not to be cached.
func (c *Cache[T]) newEntry(v T, now time.Time, t *entryTTL) (e store.Entry[T], keep bool) {
	e = store.Entry[T]{Value: v, StoredAt: now}
	if t != nil && t.set {
		if t.ttl <= 0 {
			return e, false
		}
		e.ExpiresAt = addClamped(now, t.ttl)
		if c.cfg.refreshAfter > 0 && c.cfg.refreshAfter < t.ttl {
			e.RefreshAt = now.Add(c.cfg.refreshAfter)
		}
		e.KeepUntil = addClamped(e.ExpiresAt, c.cfg.staleIfError)
		return e, true
	}
	// One random factor for both times keeps RefreshAt before ExpiresAt.
	scale := 1.0
	if c.cfg.jitter > 0 {
		scale -= rand.Float64() * c.cfg.jitter
	}
	if c.cfg.refreshAfter > 0 {
		e.RefreshAt = addClamped(now, scaled(c.cfg.refreshAfter, scale))
	}
	if c.cfg.ttl > 0 {
		e.ExpiresAt = addClamped(now, scaled(c.cfg.ttl, scale))
		e.KeepUntil = addClamped(e.ExpiresAt, c.cfg.staleIfError)
	}
	return e, true
}

func (c *Cache[T]) negativeEntry(now time.Time) store.Entry[T] {
	d := c.cfg.negativeTTL
	if c.cfg.jitter > 0 {
		d = scaled(d, 1-rand.Float64()*c.cfg.jitter)
	}
	exp := addClamped(now, d)
	return store.Entry[T]{NotFound: true, StoredAt: now, ExpiresAt: exp, KeepUntil: exp}
}

// scaled returns d*scale for a scale in (0, 1], exactly d for 1; the float
// conversion of a duration near math.MaxInt64 would otherwise overflow.
func scaled(d time.Duration, scale float64) time.Duration {
	if scale >= 1 {
		return d
	}
	f := float64(d) * scale
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}

// farFuture is the latest time an entry's times take: durations near
// math.MaxInt64 mean "practically never", and adding them to now would
// overflow time.Time's monotonic arithmetic into the past.
var farFuture = time.Unix(1<<62/int64(time.Second), 0)

// addClamped returns t+d, or farFuture if that is later or overflows.
func addClamped(t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return t.Add(d)
	}
	if u := t.Add(d); u.After(t) && u.Before(farFuture) {
		return u
	}
	return farFuture
}
