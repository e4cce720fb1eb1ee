package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// The comparisons with rueidis, the Go client with client-side caching
// (DoCache, over RESP3 client tracking): the same server, the same keys and
// the same 100-byte values on both sides. herd's values are []byte through
// the Bytes codec and a hit returns the near copy as it is; rueidis' hits
// are read with ToString, which returns the cached string as it is. Neither
// side decodes or copies on a hit.
const (
	cmpKeys      = 1000
	cmpValueSize = 100
)

// cmpValue is the 100-byte value of key i at write n.
func cmpValue(i, n int) []byte {
	v := []byte("value " + strconv.Itoa(i) + " " + strconv.Itoa(n) + " ")
	for len(v) < cmpValueSize {
		v = append(v, 'x')
	}
	return v[:cmpValueSize]
}

func cmpKey(i int) string { return "user:" + strconv.Itoa(i) }

// missBytes fails a Get in a benchmark where every Get must be a hit.
func missBytes(context.Context, string) ([]byte, error) {
	return nil, errors.New("miss in a benchmark of hits")
}

// newRueidis returns a rueidis client of srv with its defaults (client-side
// caching in OPTIN mode, 128 MiB per connection), closed at the end of the
// benchmark.
func newRueidis(b *testing.B, srv *redisServer) rueidis.Client {
	b.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.addr()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// bytesTiered returns a herd.Cache of []byte over a two-level store over
// srv, and the two-level store, closed at the end of the benchmark.
func bytesTiered(b *testing.B, srv *redisServer, prefix string) (*herd.Cache[[]byte], *tiered.VersionedStore[[]byte]) {
	b.Helper()
	far := redisstore.New[[]byte](srv.client(b), redisstore.Prefix(prefix),
		redisstore.WithCodec[[]byte](store.Bytes{}), redisstore.WithLogger(discard()))
	b.Cleanup(func() { _ = far.Close(context.Background()) })
	two, err := tiered.NewVersioned[[]byte](far, tiered.NearTTL(time.Hour), tiered.NearMaxEntries(10*cmpKeys))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := two.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return bytesCache(b, two), two
}

// bytesCache returns a herd.Cache of []byte over s, closed at the end of
// the benchmark.
func bytesCache(b *testing.B, s store.Store[[]byte]) *herd.Cache[[]byte] {
	b.Helper()
	c := herd.New[[]byte](s, herd.TTL(time.Hour), herd.WithLogger(discard()))
	b.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return c
}

// A side is one contender of an interleaved comparison: op does the i-th
// operation of a block, on the goroutine g.
type side struct {
	name string
	op   func(g, i int) error
}

// runBlock does per operations of s on each of goroutines goroutines (on
// the calling one if there is one), and returns the wall time it took.
func runBlock(s *side, goroutines, per int) (time.Duration, error) {
	if goroutines == 1 {
		start := time.Now()
		for i := range per {
			if err := s.op(0, i); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	var (
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				if err := s.op(g, i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := first.Load(); err != nil {
		return 0, *err
	}
	return took, nil
}

// interleaveSides runs a block of each side per iteration of b, starting
// with another side at each iteration, so that the drift of a shared
// machine's load falls on every side alike. It returns the times of each
// round's blocks, by side, and the number of operations each side made.
func interleaveSides(b *testing.B, sides []side, goroutines, per int) (*rounds, int) {
	b.Helper()
	r := &rounds{took: make([][]time.Duration, len(sides))}
	ops, round := 0, 0
	for b.Loop() {
		for j := range sides {
			k := (round + j) % len(sides)
			d, err := runBlock(&sides[k], goroutines, per)
			if err != nil {
				b.Fatalf("%s: %v", sides[k].name, err)
			}
			r.took[k] = append(r.took[k], d)
		}
		ops += goroutines * per
		round++
	}
	return r, ops
}

// rounds are the times of the blocks of an interleaved run: took[side][round].
type rounds struct{ took [][]time.Duration }

// total returns the time of every block of side i.
func (r *rounds) total(i int) time.Duration {
	var t time.Duration
	for _, d := range r.took[i] {
		t += d
	}
	return t
}

// ratio returns the median over the rounds of side i's block time over
// side j's: a load spike on the machine spoils the rounds it falls on, not
// the result.
func (r *rounds) ratio(i, j int) float64 {
	rs := make([]float64, len(r.took[i]))
	for k := range rs {
		rs[k] = float64(r.took[i][k]) / float64(r.took[j][k])
	}
	slices.Sort(rs)
	return rs[len(rs)/2]
}

// BenchmarkNearHitVsRueidis compares three hits of the same 100-byte
// values, over 1,000 keys, in interleaved blocks: a herd.Cache over the
// two-level store over redisstore (a near hit), a rueidis DoCache (a hit of
// its client-side cache), and a herd.Cache over store/memory; from one
// goroutine (blocks of 4,096 hits) and from 64 (blocks of 512 hits on each,
// the goroutines started anew for each block, on every side alike). It
// reports each side's time per hit (wall time: from 64 goroutines, the
// inverse of the throughput) and the ratios tiered/rueidis (target at most
// 0.4) and tiered/memory (target at most 1.1), each the median of the
// rounds' ratios. Every hit measured is checked to be one: no far read on
// the two-level store, a cache hit on rueidis, no load on memory.
func BenchmarkNearHitVsRueidis(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	values := make([][]byte, cmpKeys)
	keys := make([]string, cmpKeys)
	for i := range keys {
		keys[i], values[i] = cmpKey(i), cmpValue(i, 0)
	}

	twoCache, two := bytesTiered(b, srv, "vsrueidis")
	mem := memory.New[[]byte]()
	memCache := bytesCache(b, mem)
	b.Cleanup(func() { _ = mem.Close(ctx) })
	for i, k := range keys {
		if err := twoCache.Set(ctx, k, values[i]); err != nil {
			b.Fatal(err)
		}
		if err := memCache.Set(ctx, k, values[i]); err != nil {
			b.Fatal(err)
		}
	}
	// The echoes of those writes drop near copies, and a fill racing one
	// is not kept: read until a whole pass is served near.
	warm(b, "herd two-level", func() bool {
		before := two.Stats().FarReads
		for i, k := range keys {
			if v, err := twoCache.Get(ctx, k, missBytes); err != nil || string(v) != string(values[i]) {
				b.Fatalf("Get(%q) = %q, %v; want %q", k, v, err, values[i])
			}
		}
		return two.Stats().FarReads == before
	})

	rc := newRueidis(b, srv)
	rkeys := make([]string, cmpKeys)
	for i := range rkeys {
		rkeys[i] = "rueidis:" + keys[i]
		if err := rc.Do(ctx, rc.B().Set().Key(rkeys[i]).Value(string(values[i])).Build()).Error(); err != nil {
			b.Fatal(err)
		}
	}
	warm(b, "rueidis", func() bool {
		hits := 0
		for i, k := range rkeys {
			r := rc.DoCache(ctx, rc.B().Get().Key(k).Cache(), time.Hour)
			if s, err := r.ToString(); err != nil || s != string(values[i]) {
				b.Fatalf("rueidis GET %q = %q, %v; want %q", k, s, err, values[i])
			}
			if r.IsCacheHit() {
				hits++
			}
		}
		return hits == len(rkeys)
	})

	for _, goroutines := range []int{1, 64} {
		b.Run("goroutines="+strconv.Itoa(goroutines), func(b *testing.B) {
			per := 4096
			if goroutines > 1 {
				per = 512
			}
			key := func(g, i int) int { return (g*131 + i) % cmpKeys }
			var rueidisMisses atomic.Int64
			sides := []side{
				{"tiered", func(g, i int) error {
					v, err := twoCache.Get(ctx, keys[key(g, i)], missBytes)
					if err == nil && len(v) != cmpValueSize {
						err = fmt.Errorf("got %d bytes", len(v))
					}
					return err
				}},
				{"rueidis", func(g, i int) error {
					r := rc.DoCache(ctx, rc.B().Get().Key(rkeys[key(g, i)]).Cache(), time.Hour)
					s, err := r.ToString()
					if err == nil && len(s) != cmpValueSize {
						err = fmt.Errorf("got %d bytes", len(s))
					}
					if !r.IsCacheHit() {
						rueidisMisses.Add(1)
					}
					return err
				}},
				{"memory", func(g, i int) error {
					v, err := memCache.Get(ctx, keys[key(g, i)], missBytes)
					if err == nil && len(v) != cmpValueSize {
						err = fmt.Errorf("got %d bytes", len(v))
					}
					return err
				}},
			}
			farReads := two.Stats().FarReads
			r, ops := interleaveSides(b, sides, goroutines, per)
			if n := two.Stats().FarReads - farReads; n > 0 {
				b.Errorf("the two-level store made %d far reads: not all near hits", n)
			}
			if n := rueidisMisses.Load(); n > 0 {
				b.Errorf("rueidis missed its cache %d times: not all hits", n)
			}
			for j, s := range sides {
				b.ReportMetric(float64(r.total(j).Nanoseconds())/float64(ops), s.name+"-ns/hit")
			}
			b.ReportMetric(r.ratio(0, 1), "tiered/rueidis")
			b.ReportMetric(r.ratio(0, 2), "tiered/memory")
		})
	}
}

// warm calls pass until it reports that it was served from the cache, at
// most 20 times.
func warm(b *testing.B, what string, pass func() bool) {
	b.Helper()
	for range 20 {
		if pass() {
			return
		}
	}
	b.Fatalf("%s: 20 passes over the keys and still not all hits", what)
}

// BenchmarkWriteThenRead compares, in interleaved blocks of 32, a write
// then a read of the same key by the writer: herd (a herd.Cache Set then
// Get, over the two-level store over redisstore) against rueidis (SET, then
// DoCache GET). herd's read must return the write (herd promises
// read-your-writes); rueidis' reads that return an older value (its cached
// copy, before the invalidation of its own SET has arrived) are counted.
// It reports each side's time per pair, their ratio (herd/rueidis, the
// median of the rounds' ratios), herd's far reads per pair (the writer's
// near copy dropped by the echo of its own write costs one), rueidis'
// server reads per pair (its DoCache misses) and its stale reads per pair.
func BenchmarkWriteThenRead(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	cache, two := bytesTiered(b, srv, "ryw")
	rc := newRueidis(b, srv)
	const per = 32
	var (
		n             atomic.Int64 // the write, for distinct values
		rueidisMisses atomic.Int64
		rueidisStale  atomic.Int64 // reads that did not return the write before them
	)
	// pair makes a write then a read; a read that does not return the
	// write fails the benchmark, or is counted in stale if it is not nil.
	pair := func(write func(i int, v []byte) error, read func(i int) ([]byte, error), stale *atomic.Int64) func(g, i int) error {
		return func(_, _ int) error {
			w := int(n.Add(1))
			i := w % cmpKeys
			v := cmpValue(i, w)
			if err := write(i, v); err != nil {
				return err
			}
			got, err := read(i)
			switch {
			case err != nil:
				return err
			case string(got) == string(v):
			case stale != nil:
				stale.Add(1)
			default:
				return fmt.Errorf("read %q after writing %q", got, v)
			}
			return nil
		}
	}
	rkey := func(i int) string { return "rueidis:" + cmpKey(i) }
	sides := []side{
		{"herd", pair(
			func(i int, v []byte) error { return cache.Set(ctx, cmpKey(i), v) },
			func(i int) ([]byte, error) { return cache.Get(ctx, cmpKey(i), missBytes) },
			nil,
		)},
		{"rueidis", pair(
			func(i int, v []byte) error {
				return rc.Do(ctx, rc.B().Set().Key(rkey(i)).Value(string(v)).Build()).Error()
			},
			func(i int) ([]byte, error) {
				r := rc.DoCache(ctx, rc.B().Get().Key(rkey(i)).Cache(), time.Hour)
				if !r.IsCacheHit() {
					rueidisMisses.Add(1)
				}
				s, err := r.ToString()
				return []byte(s), err
			},
			&rueidisStale,
		)},
	}
	farReads := two.Stats().FarReads
	r, pairs := interleaveSides(b, sides, 1, per)
	b.ReportMetric(float64(r.total(0).Nanoseconds())/float64(pairs), "herd-ns/pair")
	b.ReportMetric(float64(r.total(1).Nanoseconds())/float64(pairs), "rueidis-ns/pair")
	b.ReportMetric(r.ratio(0, 1), "herd/rueidis")
	b.ReportMetric(float64(two.Stats().FarReads-farReads)/float64(pairs), "herd-far-reads/pair")
	b.ReportMetric(float64(rueidisMisses.Load())/float64(pairs), "rueidis-server-reads/pair")
	b.ReportMetric(float64(rueidisStale.Load())/float64(pairs), "rueidis-stale-reads/pair")
}
