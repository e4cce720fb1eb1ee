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

// A repair is what one reconnection cost.
type repair struct {
	// nearAtReturn is about the number of near entries once the stream's
	// return was handled: n less the changed keys for a repair, 0 for a
	// flush.
	nearAtReturn int
	// flushes is the number of times the near tier was emptied, from the
	// cut to the end of the read of every key.
	flushes uint64
	// farReads is the number of keys read from the far tier to serve every
	// key once after the return: the changed keys for a repair, every key
	// for a flush.
	farReads uint64
	// serve is the time to serve every key once after the return, in
	// GetMany batches of 1,000 (the time in GetMany only).
	serve time.Duration
	// total is the time from the proxy's restore to the last key served:
	// the reconnection, the stream's return and the read.
	total time.Duration
	// nearServe is the time of the same read just before the cut, every key
	// served near: what serve costs when nothing is read far.
	nearServe time.Duration
}

const reconnectBatch = 1000

// newReconnection starts a server, writes n keys, and builds the instance
// over a proxy with every key in its near tier.
func newReconnection(tb testing.TB, n int) *reconnection {
	tb.Helper()
	srv := startRedis(tb)
	ctx := context.Background()
	r := &reconnection{tb: tb, keys: make([]string, n)}
	for i := range r.keys {
		r.keys[i] = "user:" + strconv.Itoa(i)
	}
	opts := []redisstore.Option{
		redisstore.Prefix("reconnect"), redisstore.WithCodec[[]byte](store.Bytes{}), redisstore.WithLogger(discard()),
	}
	r.other = redisstore.New[[]byte](srv.client(tb), opts...)
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
	far := redisstore.New[[]byte](newClient(tb, r.proxy.Addr()), opts...)
	tb.Cleanup(func() { _ = far.Close(context.Background()) })
	inst, err := tiered.NewVersioned[[]byte](far, tiered.NearTTL(time.Hour), tiered.NearMaxEntries(2*n))
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
	r.readAll(func(int) int { return 0 })
	farReads := inst.Stats().FarReads
	r.readAll(func(int) int { return 0 })
	if got := inst.Stats().FarReads; got != farReads {
		tb.Fatalf("a second read of every key made %d far reads: the near tier does not hold them all", got-farReads)
	}
	return r
}

// reconnectEntry is the entry of key i at round: a value of about 100
// bytes, fresh for an hour.
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

// readAll reads every key through the instance in GetMany batches, and
// fails unless key i holds the value of round(i). It returns the time
// spent in GetMany, the checks left out.
func (r *reconnection) readAll(round func(i int) int) time.Duration {
	r.tb.Helper()
	ctx := context.Background()
	var took time.Duration
	for start := 0; start < len(r.keys); start += reconnectBatch {
		batch := r.keys[start:min(start+reconnectBatch, len(r.keys))]
		t := time.Now()
		got, err := r.inst.GetMany(ctx, batch)
		took += time.Since(t)
		if err != nil {
			r.tb.Fatal(err)
		}
		for j, k := range batch {
			i := start + j
			if e, ok := got[k]; !ok || string(e.Value) != string(cmpValue(i, round(i))) {
				r.tb.Fatalf("%q = %q (found %v); want %q", k, e.Value, ok, cmpValue(i, round(i)))
			}
		}
	}
	return took
}

// reconnect cuts the instance's proxy, changes 1 key in 100 through the
// other client, restores the proxy, waits until the instance's stream is
// back (a key written after the restore has reached it: the stream
// delivers in order, so whatever it did about its return, a Gap or an Up,
// is done), then reads every key through the instance, checking that every
// changed key reads its new value and every other one its old.
func (r *reconnection) reconnect() repair {
	r.tb.Helper()
	ctx := context.Background()
	old := func(i int) int {
		if changed(i) {
			return r.round
		}
		return 0
	}
	nearServe := r.readAll(old)
	before := r.inst.Stats()
	r.proxy.Cut()
	r.round++
	var ws []store.ConditionalWrite[[]byte]
	for i, k := range r.keys {
		if changed(i) {
			ws = append(ws, store.ConditionalWrite[[]byte]{Key: k})
		}
	}
	for start := 0; start < len(ws); start += reconnectBatch {
		batch := ws[start:min(start+reconnectBatch, len(ws))]
		keys := make([]string, len(batch))
		for j := range batch {
			keys[j] = batch[j].Key
		}
		for j, v := range r.other.GetVersions(ctx, keys) {
			if v.Err != nil {
				r.tb.Fatal(v.Err)
			}
			i, _ := strconv.Atoi(keys[j][len("user:"):])
			batch[j].Version, batch[j].Entry = v.Version, reconnectEntry(i, r.round)
		}
		for j, err := range r.other.WriteIf(ctx, batch) {
			if err != nil {
				r.tb.Fatalf("change %q: %v", batch[j].Key, err)
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
	serve := r.readAll(func(i int) int {
		if changed(i) {
			return r.round
		}
		return 0
	})
	done := time.Now()
	after := r.inst.Stats()
	return repair{
		nearAtReturn: back.NearEntries,
		flushes:      after.Flushes - before.Flushes,
		farReads:     after.FarReads - back.FarReads,
		serve:        serve,
		total:        done.Sub(restored),
		nearServe:    nearServe,
	}
}

// waitChanges reports whether the instance's stream delivers a change
// (beyond the count changes) within d.
func (r *reconnection) waitChanges(changes uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if r.inst.Stats().Changes > changes {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// behaviour names what a reconnection did to the near tier.
func (p repair) behaviour() string {
	if p.flushes > 0 {
		return "flushed"
	}
	return "repaired"
}

// An instance cut from Redis while another client changes 1% of its 10,000
// near entries: after the return, every changed key reads its new value and
// every other its old. The cost is logged: far reads to serve every key
// once, and whether the near tier was flushed or repaired.
func TestReconnectionRepair(t *testing.T) {
	const n = 10_000
	r := newReconnection(t, n)
	p := r.reconnect()
	t.Logf("%s: %d near entries at the return; %d far reads to serve the %d keys (%d changed), in %v (%v from the restore; %v all near)",
		p.behaviour(), p.nearAtReturn, p.farReads, n, n/100, p.serve, p.total, p.nearServe)
	// A second cut: the near tier holds the first's changes.
	p = r.reconnect()
	t.Logf("again: %s, %d far reads", p.behaviour(), p.farReads)
}

// BenchmarkReconnectionRepair measures the reconnection of an instance
// holding 100,000 near entries, 1% of them changed by another client while
// its connections were cut: each iteration is one cut, changes and return
// (the read of every key after it fills the near tier again for the next),
// so that -benchtime=1x gives one reconnection. It reports per
// reconnection: far-reads (keys read far to serve every key once after the
// return: 1,000 for a repair that drops only the changed keys, 100,000 for
// a flush), flushes (how often the near tier was emptied: 0 for a repair),
// near-at-return (near entries once the stream was back), serve-ms (the
// time to serve every key once after the return, in GetMany batches of
// 1,000), restore-to-served-ms (from the proxy's restore: reconnection,
// the stream's return and that read) and serve/near-serve (serve-ms over
// the time of the same read just before the cut, every key near). ns/op
// counts the cut, the changes and that read too.
func BenchmarkReconnectionRepair(b *testing.B) {
	const n = 100_000
	r := newReconnection(b, n)
	var sum repair
	reconnections := 0
	for b.Loop() {
		p := r.reconnect()
		sum.nearAtReturn += p.nearAtReturn
		sum.flushes += p.flushes
		sum.farReads += p.farReads
		sum.serve += p.serve
		sum.total += p.total
		sum.nearServe += p.nearServe
		reconnections++
	}
	per := float64(reconnections)
	b.ReportMetric(float64(sum.farReads)/per, "far-reads")
	b.ReportMetric(float64(sum.flushes)/per, "flushes")
	b.ReportMetric(float64(sum.nearAtReturn)/per, "near-at-return")
	b.ReportMetric(float64(sum.serve.Milliseconds())/per, "serve-ms")
	b.ReportMetric(float64(sum.total.Milliseconds())/per, "restore-to-served-ms")
	b.ReportMetric(float64(sum.serve)/float64(sum.nearServe), "serve/near-serve")
}
