package herdotel_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/herdotel"
)

// tracing returns a tracer provider that exports to memory, and its exporter.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func spansNamed(exp *tracetest.InMemoryExporter, name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// 100 callers of a cold key, each in its own trace, share one load: one
// herd.load span, a child of the span of the caller that started the load,
// even though that caller left before the load ended.
func TestTraceSpanPerLoadInTheFirstCallersTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, exp := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		c := newCache(t, herd.WithObserver(tr))
		gate := make(chan struct{})
		load := herdotel.Trace(tr, func(context.Context, string) (string, error) {
			<-gate
			return "v", nil
		})
		app := tp.Tracer("app")

		firstCtx, first := app.Start(context.Background(), "first request")
		leave, cancel := context.WithCancel(firstCtx)
		firstDone := make(chan error)
		go func() {
			_, err := c.Get(leave, "k", load)
			firstDone <- err
		}()
		synctest.Wait() // the first caller's load waits at the gate
		var wg sync.WaitGroup
		for range 99 {
			wg.Go(func() {
				ctx, span := app.Start(context.Background(), "other request")
				defer span.End()
				if v, err := c.Get(ctx, "k", load); err != nil || v != "v" {
					t.Errorf("Get = %q, %v", v, err)
				}
			})
		}
		synctest.Wait() // every other caller waits for the shared load
		cancel()        // the first caller leaves
		if err := <-firstDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller's Get = %v, want context.Canceled", err)
		}
		first.End()
		if n := len(spansNamed(exp, herdotel.LoadSpanName)); n != 0 {
			t.Fatalf("%d load spans ended before the load did", n)
		}
		close(gate)
		wg.Wait()
		synctest.Wait()

		loads := spansNamed(exp, herdotel.LoadSpanName)
		if len(loads) != 1 {
			t.Fatalf("%d %s spans, want 1", len(loads), herdotel.LoadSpanName)
		}
		s := loads[0]
		if s.Parent.SpanID() != first.SpanContext().SpanID() || s.SpanContext.TraceID() != first.SpanContext().TraceID() {
			t.Fatalf("load span's parent %v, want the first caller's span %v", s.Parent, first.SpanContext())
		}
		if s.Status.Code != codes.Unset {
			t.Errorf("status %v, want unset", s.Status)
		}
		if v, ok := attr(s, herdotel.CacheNameKey); !ok || v.AsString() != "users" {
			t.Errorf("herd.cache.name = %v, want users", v.AsString())
		}
		if _, ok := attr(s, herdotel.KeyKey); ok {
			t.Errorf("the key was recorded without WithKeyAttribute")
		}
	})
}

// A failed load's span has status Error and records the error; a not-found
// answer is no error; a panic ends the span with status Error.
func TestTraceStatus(t *testing.T) {
	for _, tc := range []struct {
		name     string
		load     herd.Loader[string]
		code     codes.Code
		desc     string
		notFound bool
	}{
		{"ok", loader(0, "v", nil), codes.Unset, "", false},
		{"error", loader(0, "", errDown), codes.Error, errDown.Error(), false},
		{"not found", loader(0, "", herd.ErrNotFound), codes.Unset, "", true},
		{"panic", func(context.Context, string) (string, error) { panic("bug") }, codes.Error, "loader panicked or called runtime.Goexit", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tp, exp := tracing(t)
				tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp), herdotel.WithKeyAttribute(true))
				c := newCache(t, herd.WithObserver(tr))
				_, _ = c.Get(context.Background(), "user:42", herdotel.Trace(tr, tc.load))
				synctest.Wait()
				loads := spansNamed(exp, herdotel.LoadSpanName)
				if len(loads) != 1 {
					t.Fatalf("%d %s spans, want 1", len(loads), herdotel.LoadSpanName)
				}
				s := loads[0]
				if s.Status.Code != tc.code || s.Status.Description != tc.desc {
					t.Errorf("status %v %q, want %v %q", s.Status.Code, s.Status.Description, tc.code, tc.desc)
				}
				if tc.code == codes.Error && tc.name == "error" && (len(s.Events) != 1 || s.Events[0].Name != "exception") {
					t.Errorf("events %v, want the error recorded as an exception", s.Events)
				}
				if v, _ := attr(s, herdotel.NotFoundKey); v.AsBool() != tc.notFound {
					t.Errorf("herd.not_found = %v, want %v", v.AsBool(), tc.notFound)
				}
				if v, ok := attr(s, herdotel.KeyKey); !ok || v.AsString() != "user:42" {
					t.Errorf("herd.key = %q, want user:42 with WithKeyAttribute(true)", v.AsString())
				}
			})
		})
	}
}

// A traced loader's context is still the loader's: herd.SetTTL works in it.
func TestTraceKeepsTheLoadersContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, _ := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		c := newCache(t, herd.WithObserver(tr))
		calls := 0
		load := herdotel.Trace(tr, func(ctx context.Context, _ string) (string, error) {
			calls++
			if !herd.SetTTL(ctx, 0) { // do not cache
				t.Error("SetTTL in a traced loader: not a loader's context")
			}
			return "v", nil
		})
		for range 2 {
			if _, err := c.Get(context.Background(), "k", load); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if calls != 2 {
			t.Fatalf("%d loads of a value not to be cached, want 2", calls)
		}
	})
}

// A background refresh runs in its own span, a child of the span of the
// read that found the value stale.
func TestTraceRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, exp := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		c := newCache(t, herd.WithObserver(tr))
		load := herdotel.Trace(tr, loader(10*time.Millisecond, "v", nil))
		if _, err := c.Get(context.Background(), "k", load); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(40 * time.Second) // stale
		ctx, read := tp.Tracer("app").Start(context.Background(), "read")
		r, err := c.Fetch(ctx, "k", load)
		read.End()
		if err != nil || r.Status != herd.StatusStale {
			t.Fatalf("Fetch = %v, %v, want a stale value", r.Status, err)
		}
		time.Sleep(time.Second) // the refresh runs
		synctest.Wait()
		loads, refreshes := spansNamed(exp, herdotel.LoadSpanName), spansNamed(exp, herdotel.RefreshSpanName)
		if len(loads) != 1 || len(refreshes) != 1 {
			t.Fatalf("%d %s and %d %s spans, want one of each", len(loads), herdotel.LoadSpanName, len(refreshes), herdotel.RefreshSpanName)
		}
		if p := refreshes[0].Parent; p.SpanID() != read.SpanContext().SpanID() || refreshes[0].SpanContext.TraceID() != read.SpanContext().TraceID() {
			t.Fatalf("refresh span's parent %v, want the read's span %v", p, read.SpanContext())
		}
	})
}

// A caller that gets a stale value because its load failed has a
// herd.stale_on_error event on its span.
func TestTraceStaleOnErrorEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, exp := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		c := newCache(t, herd.WithObserver(tr))
		if _, err := c.Get(context.Background(), "k", herdotel.Trace(tr, loader(0, "old", nil))); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(2 * time.Minute) // expired, kept for StaleIfError

		ctx, req := tp.Tracer("app").Start(context.Background(), "request")
		r, err := c.Fetch(ctx, "k", herdotel.Trace(tr, loader(0, "", errDown)))
		req.End()
		if err != nil || r.Status != herd.StatusStaleOnError || r.Value != "old" {
			t.Fatalf("Fetch = %q %v, %v, want the old value, stale on error", r.Value, r.Status, err)
		}
		reqs := spansNamed(exp, "request")
		if len(reqs) != 1 {
			t.Fatalf("%d request spans, want 1", len(reqs))
		}
		var events []string
		for _, e := range reqs[0].Events {
			events = append(events, e.Name)
			if e.Name != herdotel.StaleOnErrorEvent {
				continue
			}
			want := attribute.NewSet(herdotel.CacheNameKey.String("users"), attribute.String("exception.message", errDown.Error()))
			if got := attribute.NewSet(e.Attributes...); !got.Equals(&want) {
				t.Errorf("event attributes %v, want %v", e.Attributes, want.ToSlice())
			}
		}
		if len(events) != 1 || events[0] != herdotel.StaleOnErrorEvent {
			t.Fatalf("request span events %v, want one %s", events, herdotel.StaleOnErrorEvent)
		}
		// The failed load's own span has status Error.
		loads := spansNamed(exp, herdotel.LoadSpanName)
		if len(loads) != 2 || loads[1].Status.Code != codes.Error || loads[1].Parent.SpanID() != reqs[0].SpanContext.SpanID() {
			t.Fatalf("load spans %+v, want the second one failed, a child of the request", loads)
		}
	})
}

// The script of the metrics test, traced: a span per loader call, with
// status Error for the three that failed.
func TestTraceScriptedSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, exp := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		c := newCache(t, herd.WithObserver(tr))
		script(t, c, func(l herd.Loader[string]) herd.Loader[string] { return herdotel.Trace(tr, l) })
		loads := append(spansNamed(exp, herdotel.LoadSpanName), spansNamed(exp, herdotel.RefreshSpanName)...)
		var failed, notFound int
		for _, s := range loads {
			if s.Status.Code == codes.Error {
				failed++
			}
			if v, _ := attr(s, herdotel.NotFoundKey); v.AsBool() {
				notFound++
			}
		}
		if s := c.Stats(); len(loads) != int(s.Loads) || len(loads) != 7 || failed != 3 || notFound != 1 {
			t.Fatalf("%d load and refresh spans, %d failed, %d not found; want 7, 3 and 1 (Stats: %+v)", len(loads), failed, notFound, s)
		}
	})
}

// With the metrics and the tracer observing a cache, a hit allocates
// nothing.
func TestHitDoesNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, _ := tracing(t)
		tr := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
		m, err := herdotel.NewMetrics("users")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
		c := newCache(t, herd.WithObserver(herd.Observers(m, tr)))
		m.Watch(c)
		ctx, span := tp.Tracer("app").Start(context.Background(), "request")
		defer span.End()
		load := herdotel.Trace(tr, loader(0, "v", nil))
		if _, err := c.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if allocs := testing.AllocsPerRun(1000, func() {
			if _, err := c.Get(ctx, "k", load); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Fatalf("a hit allocated %v times", allocs)
		}
		if s := c.Stats(); s.Loads != 1 {
			t.Fatalf("%d loads, want 1", s.Loads)
		}
	})
}
