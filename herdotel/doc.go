// Package herdotel instruments herd caches with OpenTelemetry: metrics of
// their statistics and load latency, and traces of their loads.
//
// Metrics: [NewMetrics] creates, for a cache called name, an observable
// counter per field of [herd.Stats], read from the cache at each collection
// (so a hit costs the cache nothing more than its own count), and the
// herd.cache.load.duration histogram, fed as the cache's [herd.Observer].
// Every measurement carries the attribute herd.cache.name=name.
//
//	m, err := herdotel.NewMetrics("users", herdotel.WithMeterProvider(mp))
//	users := herd.New(st, herd.WithObserver(m))
//	m.Watch(users)
//	defer m.Close(ctx)
//
// [NewAutorefreshMetrics] does the same for an autorefresh cache.
//
// Traces: [Trace] wraps a loader so that each call runs in a herd.load span.
// A cache runs a load on the context of the first caller that needed it,
// detached from its cancellation but not from its values, so the span is a
// child of that caller's span, in its trace, even when the load outlives the
// caller. As the cache's observer, the [Tracer] adds a herd.stale_on_error
// event to the caller's span when the caller gets a stale value because the
// load failed. Keys are recorded only with [WithKeyAttribute].
//
//	t := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
//	users := herd.New(st, herd.WithObserver(herd.Observers(m, t)))
//	u, err := users.Get(ctx, "user:42", herdotel.Trace(t, loadUser))
//
// Every metric name, unit and meaning is in the README of the repository,
// section "Metrics and traces".
package herdotel
