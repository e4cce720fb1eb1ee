// Package herdotel instruments herd caches with OpenTelemetry: metrics of
// their statistics and load latency, and traces of their loads.
//
//	m, err := herdotel.NewMetrics("users", herdotel.WithMeterProvider(mp))
//	t := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
//	users := herd.New(st, herd.WithObserver(herd.Observers(m, t)))
//	m.Watch(users)
//	defer m.Close(ctx)
//	u, err := users.Get(ctx, "user:42", herdotel.Trace(t, loadUser))
//
// [NewAutorefreshMetrics] does the same as NewMetrics for an autorefresh
// cache. Every metric name, unit and meaning is in the README of the
// repository, section "Metrics and traces".
//
// # Guarantees
//
// Metrics: [NewMetrics] creates, for a cache called name, an observable
// counter per field of [herd.Stats], read from the cache at each collection,
// and the herd.cache.load.duration histogram, fed as the cache's
// [herd.Observer]. Every measurement carries the attribute
// herd.cache.name=name.
//
// Traces: [Trace] wraps a loader so that each call runs in a herd.load span
// (herd.refresh for a background refresh). A cache runs a load on the
// context of the first caller that needed it, detached from its
// cancellation but not from its values, so the span is a child of that
// caller's span, in its trace, even when the load outlives the caller. As
// the cache's observer, the [Tracer] adds a herd.stale_on_error event to the
// caller's span when the caller gets a stale value because the load failed.
// Keys are recorded only with [WithKeyAttribute].
//
// [Metrics] and [Tracer] are safe for concurrent use.
//
// # Costs
//
// The counters are read from [herd.Cache.Stats] once per collection, so a
// hit costs the cache nothing more than its own count. As observers, Metrics
// records only loads and the Tracer only stale-on-error events; every other
// event returns at once. The Tracer remembers the span of the caller of a
// failed load until its stale-on-error event or a later load of the key
// that does not fail, for at most 1,024 keys; past that bound, an arbitrary
// key is forgotten and its event is not recorded.
//
// # Errors
//
// [NewMetrics] and [NewAutorefreshMetrics] return the meter's error when it
// cannot create an instrument. The constructors, [Trace] and Watch panic on
// a programming error (an empty name, invalid [Buckets], a nil source,
// tracer or loader), with a message naming it. A traced load that fails has
// its error recorded on its span, with status Error; one that returns
// [herd.ErrNotFound] has herd.not_found=true and no error; one that panics or
// calls runtime.Goexit ends its span with status Error, and the panic goes
// on.
//
// # Lifecycle
//
// Nothing in this package starts a goroutine. [Metrics.Close] unregisters
// the counters' callback and stops recording loads; it waits for nothing,
// and only its first call does anything (and may return the meter's
// error). [NewAutorefreshMetrics] returns the registration of its callback:
// unregister it when done with the autorefresh cache. A Tracer needs no
// Close.
package herdotel
