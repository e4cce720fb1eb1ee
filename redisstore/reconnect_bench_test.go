package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// A reconnection is one instance, whose connections to Redis go through a
// proxy, holding n entries in its near tier; another client writes while
// the proxy is cut. See reconnect for what is measured.
type reconnection struct {
	tb    testing.TB
	keys  []string
	round int // the values' generation: the changed keys hold round's

	proxy *herdtest.Proxy
	inst  *tiered.VersionedStore[[]byte] // through the proxy
	other *redisstore.Store[[]byte]      // straight to the server
}

// A repair is what one reconnection cost, from the cut to the end of the
// read of every key after the return.
type repair struct {
	// nearAtReturn is about the number of near entries once the stream was
	// back: n for a repair, 0 for a flush.
	nearAtReturn int
	// flushes is the number of times the near tier was emptied.
	flushes uint64
	// farReads is the number of keys that reads read from the far tier
	// (the changed keys' polls and the read of every key): n for a flush.
	farReads uint64
	// repairReads and repairDrops are the keys that the revalidation after
	// the Gap read from the far tier and the near copies it dropped.
	repairReads, repairDrops uint64
	// repaired is the time from the proxy's restore until every changed key
	// read its new value through the instance.
	repaired time.Duration
	// serve is the time to serve every key once after that, in GetMany
	// batches of 1,000 (the time in GetMany only).
	serve time.Duration
	// total is the time from the proxy's restore to the last key served.
	total time.Duration
	// nearServe is the time of the same read of every key just before the
	// cut, every key served near.
	nearServe time.Duration
}

const reconnectBatch = 1000

// newReconnection starts a server, writes n keys, and builds the instance
// over a proxy, with opts, and every key in its near tier.
func newReconnection(tb testing.TB, n int, opts ...tiered.Option) *reconnection {
	tb.Helper()
	srv := startRedis(tb)
	ctx := context.Background()
	r := &reconnection{tb: tb, keys: make([]string, n)}
	for i := range r.keys {
		r.keys[i] = "user:" + strconv.Itoa(i)
	}
	sopts := []redisstore.Option{
		redisstore.Prefix("reconnect"), redisstore.WithCodec[[]byte](store.Bytes{}), redisstore.WithLogger(discard()),
	}
	r.other = redisstore.New[[]byte](srv.client(tb), sopts...)
	tb.Cleanup(func() { _ = r.other.Close(context.Background()) })
	ws := make([]store.ConditionalWrite[[]byte], 0, reconnectBatch)
	for start := 0; start < n; start += reconnectBatch {
		ws = ws[:0]
		for i := start; i < min(start+reconnectBatch, n); i++ {
			ws = append(ws, store.ConditionalWrite[[]byte]{Key: r.keys[i], Entry: reconnectEntry(i, 0)})
		}
		for i, err := range r.other.WriteIf(ctx, ws) {
			if err != nil {
				tb.Fatalf("fill %q: %v", ws[i].Key, err)
			}
		}
	}

	r.proxy = herdtest.NewProxy(tb, srv.addr())
	far := redisstore.New[[]byte](newClient(tb, r.proxy.Addr()), sopts...)
	tb.Cleanup(func() { _ = far.Close(context.Background()) })
	inst, err := tiered.NewVersioned[[]byte](far,
		append([]tiered.Option{tiered.NearTTL(time.Hour), tiered.NearMaxEntries(2 * n)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := inst.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	r.inst = inst
	// The instance began after the writes: its first pass fills the near
	// tier, and a second one reads nothing far.
	r.readAll(r.keys, r.want)
	farReads := inst.Stats().FarReads
	r.readAll(r.keys, r.want)
	if got := inst.Stats().FarReads; got != farReads {
		tb.Fatalf("a second read of every key made %d far reads: the near tier does not hold them all", got-farReads)
	}
	return r
}

// reconnectEntry is the entry of key i at round: a value of 100 bytes,
// fresh for an hour.
func reconnectEntry(i, round int) store.Entry[[]byte] {
	now := time.Now()
	return store.Entry[[]byte]{
		Value:    cmpValue(i, round),
		StoredAt: now, RefreshAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour), KeepUntil: now.Add(time.Hour),
	}
}

// changed reports whether key i is one of those changed while the proxy is
// cut: 1 in 100.
func changed(i int) bool { return i%100 == 0 }

// keyIndex returns i of the key "user:<i>".
func keyIndex(k string) int {
	i, _ := strconv.Atoi(k[len("user:"):])
	return i
}

// want returns the value key i holds now.
func (r *reconnection) want(i int) []byte {
	if changed(i) {
		return cmpValue(i, r.round)
	}
	return cmpValue(i, 0)
}

// read reads keys through the instance in GetMany batches and returns the
// time spent in GetMany and the keys whose value was not want's, without
// failing.
func (r *reconnection) read(keys []string, want func(i int) []byte) (time.Duration, []string) {
	r.tb.Helper()
	ctx := context.Background()
	var (
		took  time.Duration
		wrong []string
	)
	for start := 0; start < len(keys); start += reconnectBatch {
		batch := keys[start:min(start+reconnectBatch, len(keys))]
		t := time.Now()
		got, err := r.inst.GetMany(ctx, batch)
		took += time.Since(t)
		if err != nil {
			r.tb.Fatal(err)
		}
		for _, k := range batch {
			if e, ok := got[k]; !ok || string(e.Value) != string(want(keyIndex(k))) {
				wrong = append(wrong, k)
			}
		}
	}
	return took, wrong
}

// readAll is read that fails unless every key has want's value.
func (r *reconnection) readAll(keys []string, want func(i int) []byte) time.Duration {
	r.tb.Helper()
	took, wrong := r.read(keys, want)
	if len(wrong) > 0 {
		k := wrong[0]
		e, ok, err := r.inst.Get(context.Background(), k)
		r.tb.Fatalf("%d keys read another value than theirs, %q among them (now %q, %v, %v; want %q)",
			len(wrong), k, e.Value, ok, err, want(keyIndex(k)))
	}
	return took
}

// reconnect cuts the instance's proxy, changes 1 key in 100 through the
// other client, restores the proxy, and waits until the instance's stream
// is back (a key written after the restore has reached it: the stream
// delivers in order, so its return, a Gap, has been handled). Then it
// reads the changed keys through the instance until each reads its new
// value (with a repair, the revalidation after the Gap runs on its own
// goroutine, and the near copies are served meanwhile), then every key,
// checking that every one holds its value; and waits for the revalidation
// to end, to count what it read.
func (r *reconnection) reconnect() repair {
	r.tb.Helper()
	ctx := context.Background()
	nearServe := r.readAll(r.keys, r.want)
	before := r.inst.Stats()
	r.proxy.Cut()
	r.round++
	var changedKeys []string
	for i, k := range r.keys {
		if changed(i) {
			changedKeys = append(changedKeys, k)
		}
	}
	for batch := range chunks(changedKeys, reconnectBatch) {
		ws := make([]store.ConditionalWrite[[]byte], len(batch))
		for j, v := range r.other.GetVersions(ctx, batch) {
			if v.Err != nil {
				r.tb.Fatal(v.Err)
			}
			ws[j] = store.ConditionalWrite[[]byte]{Key: batch[j], Version: v.Version, Entry: reconnectEntry(keyIndex(batch[j]), r.round)}
		}
		for j, err := range r.other.WriteIf(ctx, ws) {
			if err != nil {
				r.tb.Fatalf("change %q: %v", ws[j].Key, err)
			}
		}
	}

	r.proxy.Restore()
	restored := time.Now()
	deadline := restored.Add(30 * time.Second)
	for probe := 0; ; probe++ {
		if err := r.other.Set(ctx, "probe:"+strconv.Itoa(probe), reconnectEntry(0, 0)); err != nil {
			r.tb.Fatal(err)
		}
		if r.waitChanges(before.Changes, 10*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			r.tb.Fatal("the instance's stream did not deliver a change within 30s of the restore")
		}
	}
	back := r.inst.Stats()
	pending := changedKeys
	if !poll(deadline, 100*time.Microsecond, func() bool {
		_, pending = r.read(pending, r.want)
		return len(pending) == 0
	}) {
		r.readAll(pending, r.want) // fails, saying which
	}
	repaired := time.Since(restored)
	serve := r.readAll(r.keys, r.want)
	total := time.Since(restored)
	after := r.waitRepair(back.Repairs > before.Repairs, deadline)
	return repair{
		nearAtReturn: back.NearEntries,
		flushes:      after.Flushes - before.Flushes,
		farReads:     after.FarReads - before.FarReads,
		repairReads:  after.RepairReads - before.RepairReads,
		repairDrops:  after.RepairDrops - before.RepairDrops,
		repaired:     repaired,
		serve:        serve,
		total:        total,
		nearServe:    nearServe,
	}
}

// chunks returns keys in slices of at most n.
func chunks(keys []string, n int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for start := 0; start < len(keys); start += n {
			if !yield(keys[start:min(start+n, len(keys))]) {
				return
			}
		}
	}
}

// waitChanges reports whether the instance's stream delivers a change
// (beyond the count changes) within d.
func (r *reconnection) waitChanges(changes uint64, d time.Duration) bool {
	return poll(time.Now().Add(d), 100*time.Microsecond, func() bool { return r.inst.Stats().Changes > changes })
}

// waitRepair returns the instance's counters once a revalidation, if one
// started, has ended: nothing in flight and RepairReads still for 20ms.
// It only waits for the figures, so it gives up at deadline.
func (r *reconnection) waitRepair(started bool, deadline time.Time) tiered.Stats {
	st := r.inst.Stats()
	if !started {
		return st
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		next := r.inst.Stats()
		if next.InFlight == 0 && next.RepairReads == st.RepairReads {
			return next
		}
		st = next
	}
	return st
}

// poll reports whether cond holds by deadline, asking it at once and then
// every interval.
func poll(deadline time.Time, every time.Duration, cond func() bool) bool {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// behaviour names what a reconnection did to the near tier.
func (p repair) behaviour() string {
	if p.flushes > 0 {
		return "flushed"
	}
	return "repaired"
}

// reconnectModes are the two behaviours of the near tier at a
// reconnection: revalidation (the default) and FlushWhenDown.
var reconnectModes = []struct {
	name string
	opts []tiered.Option
}{
	{"repair", nil},
	{"flush", []tiered.Option{tiered.FlushWhenDown()}},
}

// An instance cut from Redis while another client changes 1% of its 10,000
// near entries, with the near tier revalidated at the return and with
// FlushWhenDown: after the return, every changed key reads its new value
// and every other its old. The cost is logged.
func TestReconnectionRepair(t *testing.T) {
	const n = 10_000
	for _, mode := range reconnectModes {
		t.Run(mode.name, func(t *testing.T) {
			r := newReconnection(t, n, mode.opts...)
			for cut := range 2 { // the second with the first's changes near
				p := r.reconnect()
				t.Logf("cut %d: %s; %d near entries at the return; %d far reads by reads and %d by the revalidation (%d dropped) "+
					"for the %d keys (%d changed); changed keys new after %v, every key served in %v (%v all near)",
					cut+1, p.behaviour(), p.nearAtReturn, p.farReads, p.repairReads, p.repairDrops,
					n, n/100, p.repaired, p.serve, p.nearServe)
			}
		})
	}
}

// BenchmarkReconnectionRepair measures the reconnection of an instance
// holding 100,000 near entries, 1% of them changed by another client while
// its connections were cut, with the near tier revalidated at the return
// (repair, the default) and emptied (flush, FlushWhenDown). Each iteration
// is one cut, changes and return, so that -benchtime=1x gives one
// reconnection. It reports per reconnection: far-reads (keys read far by
// reads after the return: the changed keys' polls and the read of every
// key), repair-reads and repair-drops (keys the revalidation read far, and
// near copies it dropped), far-keys (their sum), flushes, near-at-return,
// repaired-ms (from the proxy's restore until every changed key reads its
// new value), serve-ms (then the time in GetMany to serve every key once,
// in batches of 1,000), restore-to-served-ms, and serve/near-serve (serve
// over the same read just before the cut, every key near).
func BenchmarkReconnectionRepair(b *testing.B) {
	const n = 100_000
	for _, mode := range reconnectModes {
		b.Run(mode.name, func(b *testing.B) {
			r := newReconnection(b, n, mode.opts...)
			var sum repair
			reconnections := 0
			for b.Loop() {
				p := r.reconnect()
				sum.nearAtReturn += p.nearAtReturn
				sum.flushes += p.flushes
				sum.farReads += p.farReads
				sum.repairReads += p.repairReads
				sum.repairDrops += p.repairDrops
				sum.repaired += p.repaired
				sum.serve += p.serve
				sum.total += p.total
				sum.nearServe += p.nearServe
				reconnections++
			}
			per := float64(reconnections)
			b.ReportMetric(float64(sum.farReads)/per, "far-reads")
			b.ReportMetric(float64(sum.repairReads)/per, "repair-reads")
			b.ReportMetric(float64(sum.repairDrops)/per, "repair-drops")
			b.ReportMetric(float64(sum.farReads+sum.repairReads)/per, "far-keys")
			b.ReportMetric(float64(sum.flushes)/per, "flushes")
			b.ReportMetric(float64(sum.nearAtReturn)/per, "near-at-return")
			b.ReportMetric(float64(sum.repaired.Milliseconds())/per, "repaired-ms")
			b.ReportMetric(float64(sum.serve.Milliseconds())/per, "serve-ms")
			b.ReportMetric(float64(sum.total.Milliseconds())/per, "restore-to-served-ms")
			b.ReportMetric(float64(sum.serve)/float64(sum.nearServe), "serve/near-serve")
		})
	}
}
