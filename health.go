package herd

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/herdcache/herd/internal/health"
	"github.com/herdcache/herd/store"
)

// The health of a remote store (see StoreBackoff): every store call the
// cache makes asks enter whether it may go, and tells exit how it went.

// errStoreDown is the error of a store call that was not made because the
// store was down.
var errStoreDown = fmt.Errorf("herd: store down, call skipped: %w", store.ErrUnavailable)

// exit records the outcome err of a store call on ctx that enter let go; a
// change of the store's health is counted, told and logged once.
func (c *Cache[T]) exit(ctx context.Context, p health.Pass, err error) {
	switch c.health.Exit(ctx, p, err) {
	case health.WentDown:
		c.record(ctx, &c.stats.storeDowns, Event{Kind: EventStoreDown, Err: err})
		c.logOnce(ctx, slog.LevelWarn, "herd: store unavailable; loading without it, and trying it again now and then",
			slog.Any("err", err))
	case health.CameBack:
		c.record(ctx, &c.stats.storeUps, Event{Kind: EventStoreUp})
		c.logOnce(ctx, slog.LevelInfo, "herd: store answers again")
	}
}

// logOnce logs a message that is written once per change, not per call.
func (c *Cache[T]) logOnce(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	defer func() {
		if recover() != nil {
			c.stats.callbackPanics.Add(1)
		}
	}()
	c.cfg.logger.LogAttrs(ctx, level, msg, attrs...)
}

// guard runs call, a store call on ctx, through the store's health: unless
// the store is down and this call is not its probe, when it returns
// errStoreDown without calling. A skipped call counts as one in
// storeError, not as a store error.
func (c *Cache[T]) guard(ctx context.Context, call func() error) error {
	return c.guarded(ctx, c.health.Enter(), call)
}

// guardLoad is guard for the store calls of a load before its loader runs
// (its version read and its lock): they are never the store's probe, so
// that a caller whose read of the store has just failed, and the store was
// marked down meanwhile, does not wait on the store a second time.
func (c *Cache[T]) guardLoad(ctx context.Context, call func() error) error {
	return c.guarded(ctx, c.health.EnterQuiet(), call)
}

func (c *Cache[T]) guarded(ctx context.Context, p health.Pass, call func() error) error {
	if p == health.Skip {
		return errStoreDown
	}
	err := call()
	c.exit(ctx, p, err)
	return err
}
