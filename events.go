package herd

import (
	"context"
	"errors"
	"log/slog"

	"github.com/herdcache/herd/internal/ratelog"
)

// hit counts a fresh hit and tells the observer; staleHit a stale one.
// They are record for the two hit paths: small enough to be inlined, with
// no dynamic call on the counter (the observer call is not inlined).
func (c *Cache[T]) hit(key string) {
	c.stats.hits.add()
	if c.cfg.observer != nil {
		c.notify(context.Background(), Event{Kind: EventHit, Key: key})
	}
}

func (c *Cache[T]) staleHit(ctx context.Context, key string) {
	c.stats.staleHits.add()
	if c.cfg.observer != nil {
		c.notify(ctx, Event{Kind: EventStaleHit, Key: key})
	}
}

// record counts an event on n and tells the observer. Small enough to be
// inlined, so that a call with a concrete counter costs no dynamic call.
func (c *Cache[T]) record(ctx context.Context, n adder, e Event) {
	n.add()
	if c.cfg.observer != nil {
		c.notify(ctx, e)
	}
}

// notify hands e to the observer, if any, recovering a panic in it.
func (c *Cache[T]) notify(ctx context.Context, e Event) {
	o := c.cfg.observer
	if o == nil {
		return
	}
	defer c.recoverCallback(ctx, "observer")
	o.Observe(e)
}

// recoverCallback, deferred, recovers a panic of a callback that the cache
// runs (an observer, a log handler), counts and logs it.
func (c *Cache[T]) recoverCallback(ctx context.Context, what string) {
	r := recover()
	if r == nil {
		return
	}
	c.stats.callbackPanics.Add(1)
	c.log(ctx, &c.callbackLog, slog.LevelError, "herd: "+what+" panicked; recovered",
		slog.Any("err", r))
}

// log logs through the cache's logger at most once per ratelog.Every for
// lim. A panic of the log handler is recovered and counted, not logged.
func (c *Cache[T]) log(ctx context.Context, lim *ratelog.Limiter, level slog.Level, msg string, attrs ...slog.Attr) {
	defer func() {
		if recover() != nil {
			c.stats.callbackPanics.Add(1)
		}
	}()
	lim.Log(ctx, c.cfg.logger, level, msg, attrs...)
}

// storeError counts and logs a store call that failed, or counts one that
// was skipped as the store was down.
func (c *Cache[T]) storeError(ctx context.Context, op, key string, err error) {
	if errors.Is(err, errStoreDown) {
		c.record(ctx, &c.stats.storeSkipped, Event{Kind: EventStoreSkipped, Key: key})
		return
	}
	c.record(ctx, &c.stats.storeErrors, Event{Kind: EventStoreError, Key: key, Err: err})
	c.logStoreError(ctx, op, key, err)
}

// logStoreError logs a failed store call, at most once per ratelog.Every,
// saying what the cache does about it.
func (c *Cache[T]) logStoreError(ctx context.Context, op, key string, err error) {
	msg := "herd: store call failed"
	switch op {
	case "get", "get many":
		msg = "herd: store read failed; loading from the source instead"
	case "lock":
		msg = "herd: lock failed; loading without it"
	case "write back":
		msg = "herd: store write failed; the loaded value was returned but not stored"
	}
	c.log(ctx, &c.storeErrLog, slog.LevelWarn, msg,
		slog.String("op", op), slog.String("key", key), slog.Any("err", err))
}
