package herdotel

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/check"
)

// Span and event names of this package.
const (
	LoadSpanName      = "herd.load"           // a span per loader call for callers that wait
	RefreshSpanName   = "herd.refresh"        // a span per loader call of a background refresh
	StaleOnErrorEvent = "herd.stale_on_error" // an event on the span of the caller that got a stale value
)

// maxRememberedSpans bounds the spans of callers of failed loads that a
// Tracer keeps for their stale-on-error events.
const maxRememberedSpans = 1024

// A TraceOption configures [NewTracer].
type TraceOption func(*traceConfig)

type traceConfig struct {
	provider trace.TracerProvider
	keys     bool
}

// WithTracerProvider sets the tracer provider of the spans. Default: the
// global one, [otel.GetTracerProvider], as it is when NewTracer is called.
func WithTracerProvider(tp trace.TracerProvider) TraceOption {
	return func(c *traceConfig) { c.provider = tp }
}

// WithKeyAttribute records, when on is true, the key of each load as the
// herd.key attribute of its span and of stale-on-error events. Keys may carry
// personal data (an e-mail address, a user id), so the default is off.
func WithKeyAttribute(on bool) TraceOption {
	return func(c *traceConfig) { c.keys = on }
}

// A Tracer traces the loads of one cache: [Trace] wraps a loader so that
// each call runs in a span, and as the cache's [herd.Observer], the Tracer
// records an event on the caller's span when the caller gets a stale value
// because a load failed. Its methods are safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
	cache  attribute.KeyValue
	keys   bool

	// failed holds, per key, the span of the caller whose load of the key
	// failed last, until a stale-on-error event for the key consumes it or
	// a load of the key succeeds. It is bounded: when full, an arbitrary
	// key is dropped, and that key's event is not recorded.
	mu     sync.Mutex
	failed map[string]trace.Span
}

// NewTracer returns the tracer of the cache called name, the value of the
// herd.cache.name attribute of its spans. It panics if name is empty.
func NewTracer(name string, opts ...TraceOption) *Tracer {
	check.That(name != "", "herdotel", "NewTracer name must not be empty")
	var cfg traceConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetTracerProvider()
	}
	return &Tracer{
		tracer: cfg.provider.Tracer(ScopeName),
		cache:  CacheNameKey.String(name),
		keys:   cfg.keys,
		failed: make(map[string]trace.Span),
	}
}

// Trace returns a loader that calls load in a span named herd.load (or
// herd.refresh for a background refresh, see [herd.Refreshing]), started
// from the loader's context. The cache runs a load on the context of the
// first caller that needed it, detached from its cancellation but not from
// its values, so the span is a child of that caller's span, in its trace:
// also when the caller has left, and for a background refresh, whose span is
// a child of the span of the read that queued it. The span carries
// herd.cache.name, and herd.key with [WithKeyAttribute]. When load fails,
// the span records the error and has status Error; when it returns
// [herd.ErrNotFound], the span has herd.not_found=true and no error. When
// load panics or calls runtime.Goexit, the span ends with status Error and
// the panic goes on.
func Trace[T any](t *Tracer, load herd.Loader[T]) herd.Loader[T] {
	check.That(t != nil && load != nil, "herdotel", "Trace needs a Tracer and a loader")
	return func(ctx context.Context, key string) (v T, err error) {
		caller := trace.SpanFromContext(ctx)
		attrs := []attribute.KeyValue{t.cache}
		if t.keys {
			attrs = append(attrs, KeyKey.String(key))
		}
		name := LoadSpanName
		if herd.Refreshing(ctx) {
			name = RefreshSpanName
		}
		ctx, span := t.tracer.Start(ctx, name, trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
		catch.Unwound(func() { v, err = load(ctx, key) }, func() {
			span.SetStatus(codes.Error, "loader panicked or called runtime.Goexit")
			span.End()
		})
		switch {
		case err == nil:
			t.succeeded(key)
		case errors.Is(err, herd.ErrNotFound):
			span.SetAttributes(NotFoundKey.Bool(true))
			t.succeeded(key)
		default:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			t.failedLoad(key, caller)
		}
		span.End()
		return v, err
	}
}

// failedLoad remembers the span of the caller of a failed load of key, if
// it is recording, for a stale-on-error event that may follow.
func (t *Tracer) failedLoad(key string, caller trace.Span) {
	if !caller.IsRecording() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.failed[key]; !ok && len(t.failed) >= maxRememberedSpans {
		for k := range t.failed {
			delete(t.failed, k)
			break
		}
	}
	t.failed[key] = caller
}

func (t *Tracer) succeeded(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failed) > 0 {
		delete(t.failed, key)
	}
}

// Observe records a herd.stale_on_error event, with the load's error as its
// exception.message attribute, on the span of the caller whose load of the
// key failed ([herd.EventStaleOnError]), if the load ran through [Trace]
// and that span is still open: the caller that is about to get the stale
// value, or one sharing its load. A stale value served without a load, while
// the key backs off after a failure, has no such span and no event. Every
// other event returns at once, so that a hit costs nothing. The cache calls
// it; see [herd.Observer].
func (t *Tracer) Observe(e herd.Event) {
	if e.Kind != herd.EventStaleOnError {
		return
	}
	t.mu.Lock()
	span, ok := t.failed[e.Key]
	delete(t.failed, e.Key)
	t.mu.Unlock()
	if !ok {
		return
	}
	attrs := []attribute.KeyValue{t.cache}
	if t.keys {
		attrs = append(attrs, KeyKey.String(e.Key))
	}
	if e.Err != nil {
		attrs = append(attrs, attribute.String("exception.message", e.Err.Error()))
	}
	span.AddEvent(StaleOnErrorEvent, trace.WithAttributes(attrs...))
}
