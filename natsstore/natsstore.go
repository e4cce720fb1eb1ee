// Package natsstore is a herd store on a NATS JetStream key-value bucket: a
// [store.Store] shared by every process that opens the same bucket, with a
// [store.Locker] so that one process in a fleet loads a key while the others
// wait for its result, and a [store.Notifier] that tells every process when a
// key changed.
//
// # Contract
//
// [New] creates the bucket, or binds to it if it exists. The store never
// closes the JetStream context or the connection it was given; [Store.Close]
// (which herd's Cache.Close calls) stops only the store's own goroutines: the
// one that follows the connection's status and those of open subscriptions.
// Every method honours its context. While the connection is down, calls fail
// at once with [ErrUnavailable] (calls in flight when it drops too), so that
// a cache answers from its loader instead of waiting for the reconnection;
// once the client reconnects, the same store works again.
//
// The store publishes on the bucket's subjects ("$KV.<bucket>.") itself, to
// attach per-message TTLs, so it does not support a JetStream context with
// an API prefix or domain.
//
// Entries are written in herd's shared envelope (see [store.Encode]) with the
// store's codec ([store.JSON] by default). Bytes that do not decode (another
// writer, another codec, corrupt data) are a miss, never an error or a panic,
// and are counted by [Store.Corrupt]. A value whose message would exceed the
// server's max payload is refused by Set with an error wrapping [ErrTooLarge]
// and nothing is written.
//
// # Keys
//
// NATS KV keys allow only [-/_=.a-zA-Z0-9]. A herd key is encoded into one
// key token: the letter 'k' followed by the key with every byte outside
// [-_/a-zA-Z0-9] written as '=' and two upper-case hex digits ("user:42"
// becomes "kuser=3A42", the empty key "k"). The encoding is injective and
// reversible. A key whose escaped form would exceed 1 KiB (NATS refuses long
// subjects) is written as 'h' and the hex SHA-256 of the key instead, and
// the escaped key travels in a message header that Get checks, so that even
// a hash collision reads as a miss rather than another key's value. Data,
// locks and notifications live under "d.", "l." and "n." in the bucket.
//
// # Expiry
//
// When the bucket allows per-message TTLs (nats-server 2.11 or newer; New
// creates the bucket with LimitMarkerTTL), an entry is written with a TTL
// that ends at its KeepUntil, rounded up to whole seconds, so the server
// drops it. In every case Get checks KeepUntil and reports an entry past it
// as a miss, so an expired entry is never served, even from a bucket bound
// without per-key TTL.
//
// # Locks
//
// TryLock creates the lock key with a per-key TTL (at least one second: the
// server's resolution); it fails with [store.ErrLocked] when the key exists.
// Extend republishes the key with a new TTL, conditioned on the lease's last
// revision, so that a renewed lock still expires once renewals stop (a plain
// KeyValue.Update would drop the TTL). Unlock purges the key conditioned on
// the same revision; either returns [store.ErrNotHeld] once another owner
// took over. The revision at acquisition is the fencing token: it is a stream
// sequence, so it grows with every acquisition. Locks need per-key TTL: on a
// bucket without it TryLock returns [ErrNoTTL].
//
// # Notifications
//
// Publish writes the key's notification key (kept for [NotifyRetention]);
// Subscribe watches the notification keys from the bucket's current revision
// on, and after a reconnection resumes its watch from the last revision it
// delivered, so that no invalidation published in between is missed (within
// the retention). A key published several times while a subscriber was
// away may be delivered once.
package natsstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/store"
)

// ErrTooLarge is returned by Set when an entry does not fit in one message of
// the server's max payload. Nothing is written.
var ErrTooLarge = errors.New("natsstore: entry larger than the server's max payload")

// ErrUnavailable is returned at once by Get, Set, Delete, TryLock and Publish
// while the connection to the server is down, and by those calls that are
// under way when it drops, so that a cache falls back to its loader instead
// of waiting for the reconnection. The store follows the connection's status
// from one goroutine, which [Store.Close] stops.
var ErrUnavailable = errors.New("natsstore: not connected to the server")

// ErrNoTTL is returned by TryLock when the bucket does not allow per-key TTLs
// (a bucket made without LimitMarkerTTL, or a server older than 2.11): a lock
// that cannot expire would outlive a crashed owner.
var ErrNoTTL = errors.New("natsstore: bucket has no per-key TTL")

var (
	_ store.Store[int] = (*Store[int])(nil)
	_ store.Locker     = (*Store[int])(nil)
	_ store.Notifier   = (*Store[int])(nil)
)

// keyHeader carries the escaped key of an entry stored under a hashed key.
const keyHeader = "Herd-Key"

// An Option configures [New].
type Option func(*config)

type config struct {
	codec     any
	markerTTL time.Duration
	notifyTTL time.Duration
	replicas  int
}

// WithCodec sets the codec of the values; its type must be a
// store.Codec[T] for the T of [New]. Default: [store.JSON].
func WithCodec[T any](c store.Codec[T]) Option { return func(o *config) { o.codec = c } }

// NotifyRetention sets how long a notification stays in the bucket for
// subscribers that are reconnecting (on a bucket without per-key TTL, the
// last notification of each key stays). Default: 10 minutes.
func NotifyRetention(d time.Duration) Option { return func(o *config) { o.notifyTTL = d } }

// MarkerTTL sets how long the bucket keeps the markers left by expired and
// deleted keys (LimitMarkerTTL), when New creates it. Default: 1 minute.
func MarkerTTL(d time.Duration) Option { return func(o *config) { o.markerTTL = d } }

// Replicas sets the bucket's replicas when New creates it. Default: 1.
func Replicas(n int) Option { return func(o *config) { o.replicas = n } }

// A Store is a [store.Store], [store.Locker] and [store.Notifier] on a NATS
// KV bucket. It is safe for concurrent use.
type Store[T any] struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	stream    jetstream.Stream
	prefix    string // the bucket's subject prefix, "$KV.<bucket>."
	codec     store.Codec[T]
	ttl       bool
	markerTTL time.Duration
	notifyTTL time.Duration
	corrupt   atomic.Uint64
	conn      *connState

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

// New returns a store on the KV bucket of js named bucket, creating the
// bucket (history 1, with per-key TTL) if it does not exist.
func New[T any](ctx context.Context, js jetstream.JetStream, bucket string, opts ...Option) (*Store[T], error) {
	cfg := config{markerTTL: time.Minute, notifyTTL: 10 * time.Minute, replicas: 1}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Store[T]{
		js: js, prefix: "$KV." + bucket + ".", codec: store.JSON[T]{},
		markerTTL: ceilSecond(cfg.markerTTL), notifyTTL: ceilSecond(cfg.notifyTTL),
		subs: make(map[*subscription]struct{}),
	}
	if cfg.codec != nil {
		c, ok := cfg.codec.(store.Codec[T])
		if !ok {
			return nil, fmt.Errorf("natsstore: codec %T is not a store.Codec[%T]", cfg.codec, *new(T))
		}
		s.codec = c
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Replicas: cfg.replicas, LimitMarkerTTL: s.markerTTL,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, err)
	}
	s.kv = kv
	s.ttl = status.LimitMarkerTTL() > 0
	if s.stream, err = js.Stream(ctx, "KV_"+bucket); err != nil {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, err)
	}
	s.conn = watchConn(js.Conn())
	return s, nil
}

// ceilSecond rounds d up to whole seconds, the resolution of NATS TTLs.
func ceilSecond(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// Corrupt returns how many reads found bytes that did not decode and were
// reported as misses.
func (s *Store[T]) Corrupt() uint64 { return s.corrupt.Load() }

// KeyValue returns the bucket the store works on.
func (s *Store[T]) KeyValue() jetstream.KeyValue { return s.kv }

// Get returns the entry of key, or false when it is absent, past its
// KeepUntil, or not decodable.
func (s *Store[T]) Get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	ctx, done, err := s.conn.bind(ctx, "get", key)
	if err != nil {
		return store.Entry[T]{}, false, err
	}
	defer done()
	token, hashed := encodeKey(key)
	var data []byte
	if hashed {
		m, err := s.stream.GetLastMsgForSubject(ctx, s.prefix+"d."+token)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return store.Entry[T]{}, false, nil
		case err != nil:
			return store.Entry[T]{}, false, fmt.Errorf("natsstore: get %q: %w", key, failed(ctx, err))
		case m.Header.Get(keyHeader) != escape(key):
			if m.Header.Get("KV-Operation") == "" && m.Header.Get(jetstream.MarkerReasonHeader) == "" {
				s.corrupt.Add(1)
			}
			return store.Entry[T]{}, false, nil
		}
		data = m.Data
	} else {
		kve, err := s.kv.Get(ctx, "d."+token)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return store.Entry[T]{}, false, nil
		case err != nil:
			return store.Entry[T]{}, false, fmt.Errorf("natsstore: get %q: %w", key, failed(ctx, err))
		}
		data = kve.Value()
	}
	e, err := store.Decode(s.codec, data)
	if err != nil {
		s.corrupt.Add(1)
		return store.Entry[T]{}, false, nil
	}
	if !e.Live(time.Now()) {
		return store.Entry[T]{}, false, nil
	}
	return e, true, nil
}

// Set writes e under key, with a per-key TTL up to e.KeepUntil when the
// bucket allows it. An entry already past its KeepUntil removes the key.
func (s *Store[T]) Set(ctx context.Context, key string, e store.Entry[T]) error {
	ctx, done, err := s.conn.bind(ctx, "set", key)
	if err != nil {
		return err
	}
	defer done()
	data, err := store.Encode(s.codec, e)
	if err != nil {
		return fmt.Errorf("natsstore: set %q: %w", key, err)
	}
	token, hashed := encodeKey(key)
	var opts []jetstream.PublishOpt
	if s.ttl && !e.KeepUntil.IsZero() {
		d := time.Until(e.KeepUntil)
		if d <= 0 {
			return s.Delete(ctx, key)
		}
		opts = append(opts, jetstream.WithMsgTTL(ceilSecond(d)))
	}
	m := &nats.Msg{Subject: s.prefix + "d." + token, Data: data, Header: nats.Header{}}
	if hashed {
		m.Header.Set(keyHeader, escape(key))
	}
	if _, err := s.publish(ctx, m, opts...); err != nil {
		return fmt.Errorf("natsstore: set %q: %w", key, failed(ctx, err))
	}
	return nil
}

// publish sends m, refusing up front a message over the max payload (the
// client would refuse it too, but its error does not say which limit).
func (s *Store[T]) publish(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	size := len(m.Data) + 256 // room for the headers the client adds
	for k, vs := range m.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if limit := s.js.Conn().MaxPayload(); limit > 0 && int64(size) > limit {
		return nil, fmt.Errorf("%w: %d bytes, max payload %d", ErrTooLarge, len(m.Data), limit)
	}
	ack, err := s.js.PublishMsg(ctx, m, opts...)
	if errors.Is(err, nats.ErrMaxPayload) {
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return ack, err
}

// Delete removes key. Deleting a missing key is not an error.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	ctx, done, err := s.conn.bind(ctx, "delete", key)
	if err != nil {
		return err
	}
	defer done()
	token, _ := encodeKey(key)
	if err := s.purge(ctx, "d."+token); err != nil {
		return fmt.Errorf("natsstore: delete %q: %w", key, failed(ctx, err))
	}
	return nil
}

// purge removes every revision of key and leaves a marker that expires with
// the bucket's marker TTL where it can.
func (s *Store[T]) purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if s.ttl {
		opts = append(opts, jetstream.PurgeTTL(s.markerTTL))
	}
	return s.kv.Purge(ctx, key, opts...)
}

// Close stops the store's subscriptions that are still open and the
// goroutine that follows the connection's status, and waits for them, up to
// ctx. It leaves the bucket, the JetStream context and the connection alone;
// the store stays usable, but calls in flight when the connection drops then
// wait for their own context.
func (s *Store[T]) Close(ctx context.Context) error {
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, sub := range subs {
			_ = sub.Close()
		}
		s.conn.close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsstore: close: %w", ctx.Err())
	}
}
