package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// A cache over a bounded memory store.
func Example() {
	ctx := context.Background()
	users := herd.New[string](memory.New[string](memory.MaxEntries(100_000)), herd.TTL(time.Minute))
	defer users.Close(ctx)

	load := func(_ context.Context, key string) (string, error) { return "Ada (" + key + ")", nil }
	v, _ := users.Get(ctx, "user:42", load)
	fmt.Println(v)
	// Output: Ada (user:42)
}

// Two caches over one memory store behave as two processes over one shared
// server: a write through one wins over a load in flight on the other.
func Example_sharedStore() {
	ctx := context.Background()
	shared := memory.New[string]()
	defer shared.Close(ctx)
	a := herd.New[string](shared, herd.WithLocker(shared, time.Second))
	b := herd.New[string](shared, herd.WithLocker(shared, time.Second))

	started, finish := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, _ := a.Get(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-finish
			return "loaded before the write", nil
		})
		done <- v
	}()
	<-started
	_ = b.Set(ctx, "k", "written by b") // lands during a's load
	close(finish)
	fmt.Println("a's caller:", <-done)

	// a's late result was not written over b's write.
	v, _ := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "loaded again", nil })
	fmt.Println("a now:", v)
	// Output:
	// a's caller: loaded before the write
	// a now: written by b
}

// A watch reports every change of the store's keys, from any writer.
func ExampleStore_Watch() {
	ctx := context.Background()
	s := memory.New[int]()
	defer s.Close(ctx)
	changed := make(chan string, 1)
	w, _ := s.Watch(ctx, func(c store.Change) { changed <- c.Key })
	defer w.Close()
	_ = s.Set(ctx, "k", store.Entry[int]{Value: 1})
	fmt.Println("changed:", <-changed)
	// Output: changed: k
}

// A Locker gives one lease per key at a time.
func ExampleLocker() {
	ctx := context.Background()
	var l memory.Locker
	lease, _ := l.TryLock(ctx, "k", time.Minute)
	_, err := l.TryLock(ctx, "k", time.Minute)
	fmt.Println(err)
	_ = lease.Unlock(ctx)
	_, err = l.TryLock(ctx, "k", time.Minute)
	fmt.Println(err)
	// Output:
	// store: locked by another owner
	// <nil>
}

// A batch of loads written back in one call: each key is written only if
// nothing wrote it since its version was read, and the others land.
func ExampleStore_WriteIf() {
	ctx := context.Background()
	s := memory.New[string]()
	defer s.Close(ctx)
	keys := []string{"a", "b", "c"}
	reads := s.GetVersions(ctx, keys)
	_ = s.Set(ctx, "b", store.Entry[string]{Value: "written meanwhile"})

	writes := make([]store.ConditionalWrite[string], len(keys))
	for i, k := range keys {
		writes[i] = store.ConditionalWrite[string]{Key: k, Version: reads[i].Version, Entry: store.Entry[string]{Value: "loaded " + k}}
	}
	for i, err := range s.WriteIf(ctx, writes) {
		e, _, _ := s.Get(ctx, keys[i])
		fmt.Printf("%s: %v, holds %q\n", keys[i], err, e.Value)
	}
	// Output:
	// a: <nil>, holds "loaded a"
	// b: store: key written since its version was read, holds "written meanwhile"
	// c: <nil>, holds "loaded c"
}

// The locks of a batch, taken, extended and released in one call each: a
// key another owner holds comes back ErrLocked, the others locked.
func ExampleLocker_TryLockMany() {
	ctx := context.Background()
	var l memory.Locker
	other, _ := l.TryLock(ctx, "b", time.Minute)
	defer func() { _ = other.Unlock(ctx) }()

	var mine []store.Lock
	for i, r := range l.TryLockMany(ctx, []string{"a", "b", "c"}, time.Minute) {
		fmt.Println(i, r.Err)
		if r.Err == nil {
			mine = append(mine, r.Lock)
		}
	}
	fmt.Println(l.ExtendMany(ctx, mine, time.Minute))
	fmt.Println(l.UnlockMany(ctx, mine))
	// Output:
	// 0 <nil>
	// 1 store: locked by another owner
	// 2 <nil>
	// [<nil> <nil>]
	// [<nil> <nil>]
}
