package herd

import "errors"

// Observers returns an [Observer] that passes each event to every observer
// in os, in order, so that a cache can feed several at once (Prometheus,
// OpenTelemetry and one of your own):
//
//	herd.WithObserver(herd.Observers(promCollector, otelMetrics, myObserver))
//
// Nil observers are left out, and observers built by Observers are
// flattened. With no observer left, Observers returns nil, which
// [WithObserver] takes as none; with one, it returns that one.
//
// The observer it returns adds no allocation and no lock to an event: it
// loops over a slice fixed at construction. It runs where the cache calls
// it, on the goroutine that caused the event; a panic in one of os stops
// the loop and reaches that goroutine as the observer's own panic would.
func Observers(os ...Observer) Observer {
	var all observerList
	for _, o := range os {
		switch o := o.(type) {
		case nil:
		case observerList:
			all = append(all, o...)
		default:
			all = append(all, o)
		}
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return all
}

// observerList is the observer that Observers builds.
type observerList []Observer

// Observe passes e to every observer of the list, in order.
func (l observerList) Observe(e Event) {
	for _, o := range l {
		o.Observe(e)
	}
}

// A LoadResult says how a load ended, for metrics that split loads by
// result: see [Event.LoadResult].
type LoadResult uint8

// The results of a load.
const (
	LoadOK       LoadResult = iota // the loader returned a value
	LoadNotFound                   // the loader returned an error wrapping ErrNotFound
	LoadFailed                     // the loader failed, panicked or called runtime.Goexit
)

// String returns the result as a metric label: "ok", "not_found" or "error".
func (r LoadResult) String() string {
	switch r {
	case LoadOK:
		return "ok"
	case LoadNotFound:
		return "not_found"
	}
	return "error"
}

// LoadResult says how the load of an [EventLoad] or [EventBatchLoad] ended,
// from its Err.
func (e Event) LoadResult() LoadResult {
	switch {
	case e.Err == nil:
		return LoadOK
	case errors.Is(e.Err, ErrNotFound):
		return LoadNotFound
	}
	return LoadFailed
}
