package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
)

func changeStream(t *testing.T, s store.Store[Value]) store.ChangeStream {
	t.Helper()
	c, ok := s.(store.ChangeStream)
	if !ok {
		t.Fatalf("%T does not implement store.ChangeStream", s)
	}
	return c
}

// A recorder keeps what a watch delivered, and wakes whoever waits for more.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
	notify  chan struct{}
}

func watch(t *testing.T, cs store.ChangeStream) *recorder {
	t.Helper()
	r := &recorder{notify: make(chan struct{}, 1)}
	w, err := cs.Watch(context.Background(), func(c store.Change) {
		r.mu.Lock()
		r.changes = append(r.changes, c)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Watch.Close: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Watch.Close: %v", err)
		}
	})
	return r
}

// await waits up to 30s until done holds of the changes delivered so far.
func (r *recorder) await(t *testing.T, what string, done func([]store.Change) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		ok := done(r.changes)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("%s: not within 30s; delivered: %s", what, r)
		}
	}
}

// awaitWrites writes key through w every 100ms until a change of it is
// delivered at or after from, for up to 30s.
func (r *recorder) awaitWrites(t *testing.T, w store.Store[Value], key string, from int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		mustSet(t, w, key, entry(Value{Name: key}, time.Now().Truncate(time.Millisecond)))
		r.mu.Lock()
		i := index(r.changes, from, func(c store.Change) bool { return c.Key == key })
		r.mu.Unlock()
		if i >= 0 {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("a write of %q not delivered within 30s; delivered:%s", key, r)
		}
	}
}

// index returns the position of the first change at or after from for
// which match holds, or -1.
func index(cs []store.Change, from int, match func(store.Change) bool) int {
	for i := from; i < len(cs); i++ {
		if match(cs[i]) {
			return i
		}
	}
	return -1
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.changes {
		switch {
		case c.All:
			b.WriteString(" All")
		case c.Down:
			b.WriteString(" Down")
		case c.Up:
			b.WriteString(" Up")
		case c.Gap:
			b.WriteString(" Gap")
		default:
			fmt.Fprintf(&b, " %q@%d", c.Key, c.Version)
		}
	}
	return b.String()
}

// checkVersions fails t unless every change in cs with a non-zero Version
// gave its key that version according to want (the keys' versions read
// after their last write, for keys written once since the watch began),
// and, when the store promises versions, unless every change of those keys
// has one.
func (s suite) checkVersions(t *testing.T, cs []store.Change, want map[string]store.Version) {
	t.Helper()
	last := make(map[string]store.Version)
	for _, c := range cs {
		if c.Key == "" && (c.All || c.Down || c.Up || c.Gap) {
			continue
		}
		if _, ok := want[c.Key]; !ok {
			continue
		}
		if c.Version == 0 && s.opts.ChangeVersions {
			t.Errorf("change of %q without a version, from a stream that reports them", c.Key)
		}
		last[c.Key] = c.Version
	}
	for k, v := range last {
		if v != 0 && v != want[k] {
			t.Errorf("last change of %q has version %d; the key's version is %d", k, v, want[k])
		}
	}
}

// changesDelivery: every kind of write through another client reaches a
// watch, for every odd key, with the version it gave the key where the
// stream knows it, and nothing reports a loss on a healthy stream.
func (s suite) changesDelivery(t *testing.T) {
	writer := s.newStore(t)
	r := watch(t, changeStream(t, s.newStore(t)))
	ctx := context.Background()
	keys := OddKeys(64)
	for i, k := range keys {
		var err error
		switch i % 3 {
		case 0:
			err = writer.Set(ctx, k, entry(Value{Name: "v"}, s.now()))
		case 1:
			mustSet(t, writer, k, entry(Value{Name: "v"}, s.now()))
			err = writer.Delete(ctx, k)
		default:
			if v, ok := writer.(store.Versioned[Value]); ok {
				_, ver, _, gerr := v.GetVersion(ctx, k)
				if gerr != nil {
					t.Fatal(gerr)
				}
				err = v.SetIf(ctx, k, entry(Value{Name: "v"}, s.now()), ver)
			} else {
				err = writer.Set(ctx, k, entry(Value{Name: "v"}, s.now()))
			}
		}
		if err != nil {
			t.Fatalf("write %q: %v", k, err)
		}
	}
	want := make(map[string]store.Version)
	v, versioned := writer.(store.Versioned[Value])
	for _, k := range keys {
		if versioned {
			want[k] = mustVersion(t, v, k)
		}
	}
	r.await(t, "every changed key reported, with its last version", func(cs []store.Change) bool {
		if i := index(cs, 0, func(c store.Change) bool { return c.All || c.Down || c.Up || c.Gap }); i >= 0 {
			t.Fatalf("a healthy stream reported %+v", cs[i])
		}
		last := make(map[string]store.Version)
		seen := make(map[string]bool)
		for _, c := range cs {
			seen[c.Key] = true
			last[c.Key] = c.Version
		}
		for _, k := range keys {
			if !seen[k] || (versioned && last[k] != 0 && last[k] != want[k]) {
				return false
			}
		}
		return true
	})
	if versioned {
		r.mu.Lock()
		s.checkVersions(t, r.changes, want)
		r.mu.Unlock()
	}
}

// changesCut: a stream cut (by the backend's Options.Cut) reports Down;
// once restored, it reports Up after replaying the changes made during the
// cut, or a Gap or an All, before any later change; every Down is followed
// by an Up or a Gap.
func (s suite) changesCut(t *testing.T) {
	writer := s.newStore(t)
	watched := s.newStore(t)
	r := watch(t, changeStream(t, watched))
	ctx := context.Background()
	mustSet(t, writer, "before", entry(Value{Name: "v"}, s.now()))
	r.await(t, "the change before the cut", func(cs []store.Change) bool {
		return index(cs, 0, func(c store.Change) bool { return c.Key == "before" }) >= 0
	})
	restore := s.opts.Cut(t, watched)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	var down int
	r.await(t, "Down after the cut", func(cs []store.Change) bool {
		down = index(cs, 0, func(c store.Change) bool { return c.Down })
		return down >= 0
	})
	during := []string{"during-0", "during-1", "during-2", "before"}
	for i, k := range during {
		var err error
		if i%2 == 0 {
			err = writer.Set(ctx, k, entry(Value{Name: "cut"}, s.now()))
		} else {
			err = writer.Delete(ctx, k)
		}
		if err != nil {
			t.Fatalf("write %q during the cut: %v", k, err)
		}
	}
	want := make(map[string]store.Version)
	if v, ok := writer.(store.Versioned[Value]); ok {
		for _, k := range during {
			want[k] = mustVersion(t, v, k)
		}
	}
	restore()
	restored = true
	var back int
	r.await(t, "Up or Gap after the restore", func(cs []store.Change) bool {
		back = index(cs, down, func(c store.Change) bool { return c.Up || c.Gap })
		return back >= 0
	})
	// The stream is back: a write now reaches the watch after the
	// report. A stream that lost its footing again may need more writes;
	// each is then covered by the next Down and what follows it.
	r.awaitWrites(t, writer, "after", back)
	r.mu.Lock()
	cs := append([]store.Change(nil), r.changes...)
	r.mu.Unlock()
	if i := index(cs, 0, func(c store.Change) bool { return c.Key == "after" }); i < back {
		t.Fatalf("the change after the restore (at %d) came before the stream said it was back (at %d):%s", i, back, r)
	}
	// Every Down is followed by an Up or a Gap before the next Down.
	isDown := false
	for i, c := range cs {
		switch {
		case c.Down && isDown:
			t.Fatalf("Down at %d while down:%s", i, r)
		case c.Down:
			isDown = true
		case c.Up && !isDown:
			t.Fatalf("Up at %d while not down:%s", i, r)
		case c.Up, c.Gap:
			isDown = false
		}
	}
	between := cs[down+1 : back]
	lost := index(between, 0, func(c store.Change) bool { return c.All }) >= 0 || cs[back].Gap
	if s.opts.Resumes && lost {
		t.Fatalf("a stream that resumes reported a loss across a cut:%s", r)
	}
	if !lost {
		// Up without a loss: every change made during the cut was
		// replayed before it.
		for _, k := range during {
			if index(between, 0, func(c store.Change) bool { return c.Key == k }) < 0 {
				t.Fatalf("Up after the cut without the change of %q made during it:%s", k, r)
			}
		}
		s.checkVersions(t, between, want)
	}
}
