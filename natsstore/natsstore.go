// Package natsstore is a herd store on a NATS JetStream key-value bucket: a
// [store.Store] shared by every process that opens the same bucket, with a
// [store.Locker] so that one process in a fleet loads a key while the others
// wait for its result, [store.Versioned] conditional writes so that a load
// never overwrites a newer write, a [store.ChangeStream] that reports every
// change of the bucket's keys, whoever made it, and the bulk capabilities
// [store.BulkGetter], [store.BulkVersioned] and [store.BulkLocker].
//
// # Contract
//
// [New] creates the bucket, or binds to it if it exists. The store never
// closes the JetStream context or the connection it was given; [Store.Close]
// (which herd's Cache.Close calls) stops only the store's own goroutines:
// the one that follows the connection's status and those of open watches.
// After Close every method returns [ErrClosed]. Every method honours its
// context and is safe for concurrent use; a nil context panics. While the
// connection is down, calls fail at once with [ErrUnavailable] (calls in
// flight when it drops too), so that a cache answers from its loader
// instead of waiting for the reconnection; once the client reconnects, the
// same store works again.
//
// # What a call costs
//
//   - Get, GetVersion, Set, Delete, SetIf, DeleteIf, and a lock's Extend
//     and Unlock: one request. TryLock: one request, three when the lock
//     key holds the marker of a released or expired lock (as
//     KeyValue.Create).
//   - GetMany and GetVersions: one get per key, [BulkConcurrency] (16) at a
//     time: about one round trip per 16 keys.
//   - WriteIf, TryLockMany, ExtendMany and UnlockMany: asynchronous
//     publishes, each with the expected last sequence of its subject, at
//     most [BulkInFlight] (256) awaiting their acks at a time, and one wait
//     for the acks: about one round trip per 256 keys. TryLockMany then
//     reads the lock keys that hold a message and creates again those over
//     a marker, as TryLock does.
//   - Each key of a bulk call has its own outcome. On a context without a
//     deadline, each request or publish of a bulk call waits for its answer
//     for the JetStream context's default timeout
//     (jetstream.WithDefaultTimeout), as a single call's does.
//
// Contention is never a failure, on a single server or a cluster: a write
// whose expected last sequence does not hold is refused by a single server
// with the API error 10071 ("wrong last sequence: n"), and by a clustered
// stream also with 10164 ("wrong last sequence") while another write of
// the subject is being replicated; both are [store.ErrConflict] for a
// conditional write, [store.ErrLocked] for TryLock and [store.ErrNotHeld]
// for a lock's Extend and Unlock. (A write refused with 10164 may thus be
// refused for a write that, in the end, does not land; refusing is the
// safe side.)
//
// # A dead server costs a load, not a wait
//
// How fast a server that died or stalled turns into [ErrUnavailable] is
// decided by the client's settings, which the caller owns:
//
//   - nats.PingInterval and nats.MaxPingsOutstanding: a server that stalls
//     without closing the connection is declared dead after about their
//     product (2 minutes × 2 by default). Recommended: 5s and 2.
//   - nats.FlusherTimeout: a write to a stalled socket holds the
//     connection's lock, and so blocks every call of every goroutine on the
//     connection, whatever their contexts, for up to this long (1 minute by
//     default). Recommended: 1s.
//   - nats.MaxReconnects(-1), nats.ReconnectWait (2s by default) and
//     nats.ReconnectBufSize: keep reconnecting for ever; the wait sets how
//     soon the store works again after the server is back. The store sends
//     nothing while disconnected, so the reconnect buffer only matters to
//     the connection's other users.
//   - jetstream.WithDefaultTimeout: the deadline of a call whose context has
//     none (5s by default). Recommended: about the cache's StoreTimeout.
//   - nats.Timeout: how long New's first dial waits (2s by default).
//
// See the package example.
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
// a hash collision reads as a miss rather than another key's value. Data and
// locks live under "d." and "l." in the bucket.
//
// The store publishes on the bucket's subjects ("$KV.<bucket>.") itself, to
// attach per-message TTLs and conditions, so it does not support a
// JetStream context with an API prefix or domain.
//
// # Entries and expiry
//
// Entries are written in herd's shared envelope (see [store.Encode]) with the
// store's codec ([store.JSON] by default). Bytes that do not decode (another
// writer, another codec, corrupt data) are a miss, never an error or a panic,
// and are counted by [Store.Corrupt]. A value whose message would exceed the
// server's max payload is refused by Set with an error wrapping [ErrTooLarge]
// and nothing is written.
//
// When the bucket allows per-message TTLs (nats-server 2.11 or newer; New
// creates the bucket with LimitMarkerTTL), an entry is written with a TTL
// that ends at its KeepUntil, rounded up to whole seconds, so the server
// drops it and leaves a marker in its place. In every case Get checks
// KeepUntil and reports an entry past it as a miss, so an expired entry is
// never served, even from a bucket bound without per-key TTL.
//
// # Versions
//
// A key's [store.Version] is the stream sequence of the last message on the
// key's subject: its value, the marker of a Delete, or the marker the server
// leaves when the entry expires. Sequences are never reused in a bucket, so
// every write gives the key a version it never had. A key with no message
// has version 0. GetVersion reads that message (one request, as Get);
// SetIf and DeleteIf publish with the key's expected last sequence, so the
// server refuses them atomically when another write came first. Delete and
// expiry markers are kept for the bucket's marker TTL ([MarkerTTL]), which
// is the store's [Store.VersionRetention] (bounded by the bucket's max age,
// if it has one). The server drops an expired entry up to a second after its
// KeepUntil; that drop is a write of the key, so a conditional write racing
// it is refused.
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
// sequence, so it grows with every acquisition of every key. A released
// lock leaves a marker for a second, an expired one for the bucket's marker
// TTL, and then nothing, so locking any number of keys leaves no residue
// beyond that time. Locks need per-key TTL: on a bucket without it TryLock
// returns [ErrNoTTL].
//
// # Changes
//
// [Store.Watch] follows the data keys of the bucket with an ephemeral
// consumer of the bucket's stream, from the moment it returns: every value,
// delete and expiry marker, written by herd or by any other client, is
// reported as the key it belongs to, with the stream sequence of its
// message as Version (the key's version, as GetVersion reads it). When the
// connection drops or the consumer is lost, the watch reports Down; once the
// connection is back it starts a new consumer right after the last message
// it delivered, so that the stream replays exactly the keys changed
// meanwhile (it keeps each key's last message), and reports Up once the
// replay is done. When it cannot replay from there (the stream was
// recreated or purged, its first message is past the watch's position, or
// the cut outlasted the markers of deletes), it reports All, then Up. A
// purge through the JetStream API, which leaves no marker, is reported as
// Down, then All and Up; a bucket that discards messages without markers
// (a max age without a marker TTL) as All (see [Store.Watch]). A hashed
// key is reported by its real key when the message names it (values and
// deletes written by this package do); an expiry marker of a hashed key is
// mapped through the last 1024 hashed keys the watch saw written, and
// reported as All when it is not among them.
//
// # Replicas
//
// On a bucket with more than one replica (see [Replicas]), the store reads
// from the stream's leader (a JetStream API get), not by a direct get that
// any replica may answer: a follower may not yet hold the change a watch
// has just reported, and a near tier filled from it would keep the value the
// change replaced. On one replica, reads are direct gets.
package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// ErrTooLarge is returned by Set when an entry does not fit in one message of
// the server's max payload. Nothing is written.
var ErrTooLarge = errors.New("natsstore: entry larger than the server's max payload")

// ErrUnavailable is returned at once by every call while the connection to
// the server is down, and by those calls that are under way when it drops,
// so that a cache falls back to its loader instead of waiting for the
// reconnection. The store follows the connection's status from one
// goroutine, which [Store.Close] stops.
var ErrUnavailable = fmt.Errorf("natsstore: not connected to the server: %w", store.ErrUnavailable)

// ErrNoTTL is returned by TryLock when the bucket does not allow per-key TTLs
// (a bucket made without LimitMarkerTTL, or a server older than 2.11): a lock
// that cannot expire would outlive a crashed owner.
var ErrNoTTL = errors.New("natsstore: bucket has no per-key TTL")

// ErrClosed is returned by every method of a [Store], and of its locks, once
// [Store.Close] was called.
var ErrClosed = errors.New("natsstore: store closed")

// Headers the store reads and writes.
const (
	keyHeader = "Herd-Key"     // the escaped key of a message under a hashed key
	kvOp      = "KV-Operation" // the KV client's delete and purge markers
	kvPurge   = "PURGE"
)

// An Option configures [New]. An invalid value panics when the option is
// made, with a message naming it.
type Option func(*config)

type config struct {
	codec     any
	markerTTL time.Duration
	markerSet bool
	replicas  int
	bulk      int
	inFlight  int
	logger    *slog.Logger
}

// WithCodec sets the codec of the values; its type must be a
// store.Codec[T] for the T of [New] (New panics otherwise). Default:
// [store.JSON].
func WithCodec[T any](c store.Codec[T]) Option {
	check.That(c != nil, "natsstore", "WithCodec must be given a codec, got nil")
	return func(o *config) { o.codec = c }
}

// MarkerTTL sets how long the bucket keeps the markers left by deleted and
// expired keys (the bucket's LimitMarkerTTL), which is how long the store
// remembers that a key was written ([Store.VersionRetention]). It applies
// when New creates the bucket; New returns an error if it binds to a bucket
// with another marker TTL. d must be a whole number of seconds, at least
// one. Default: [store.DefaultVersionRetention] (5 minutes).
func MarkerTTL(d time.Duration) Option {
	check.That(d >= time.Second && d%time.Second == 0, "natsstore", "MarkerTTL must be a whole number of seconds, at least 1s, got %v", d)
	return func(o *config) { o.markerTTL, o.markerSet = d, true }
}

// Replicas sets the bucket's replicas when New creates it, from 1 to 5.
// With more than one, reads go to the stream's leader (see "Replicas" in
// the package documentation). Default: 1.
func Replicas(n int) Option {
	check.That(n >= 1 && n <= 5, "natsstore", "Replicas must be from 1 to 5, got %d", n)
	return func(o *config) { o.replicas = n }
}

// BulkConcurrency sets how many gets [Store.GetMany], [Store.GetVersions]
// and [Store.TryLockMany] run at once, at least one. Default: 16.
func BulkConcurrency(n int) Option {
	check.That(n >= 1, "natsstore", "BulkConcurrency must be at least 1, got %d", n)
	return func(o *config) { o.bulk = n }
}

// BulkInFlight sets how many of the asynchronous publishes of one bulk
// write ([Store.WriteIf], [Store.TryLockMany], [Store.ExtendMany],
// [Store.UnlockMany]) may await their acks at once, at least one: a batch
// costs about one round trip per n messages. Keep it below the JetStream
// context's jetstream.WithPublishAsyncMaxPending (4000 by default), which
// bounds the async publishes of all its users together. Default: 256.
func BulkInFlight(n int) Option {
	check.That(n >= 1, "natsstore", "BulkInFlight must be at least 1, got %d", n)
	return func(o *config) { o.inFlight = n }
}

// WithLogger sets the logger of what the store's own goroutines meet: a
// watch's lost changes and recovered panics. Default: [slog.Default].
func WithLogger(l *slog.Logger) Option {
	l = check.NotNil("natsstore", "WithLogger", "logger", l)
	return func(o *config) { o.logger = l }
}

// A Store is a [store.Store], [store.Locker], [store.Versioned],
// [store.ChangeStream], [store.BulkGetter], [store.BulkVersioned] and
// [store.BulkLocker] on a NATS KV bucket. It is safe for concurrent use.
type Store[T any] struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	stream    jetstream.Stream
	bucket    string
	prefix    string // the bucket's subject prefix, "$KV.<bucket>."
	codec     store.Codec[T]
	ttl       bool          // the bucket allows per-message TTLs
	leader    bool          // reads go to the stream's leader: the bucket has replicas
	markerTTL time.Duration // the bucket's LimitMarkerTTL
	retention time.Duration
	bulk      int
	inFlight  int
	logger    *slog.Logger
	corrupt   atomic.Uint64
	lockIDs   atomic.Uint64
	conn      *connState

	mu        sync.Mutex
	closed    atomic.Bool
	watches   map[*watch]struct{}
	closeOnce sync.Once
	closeDone chan struct{}
}

// New returns a store on the KV bucket of js named bucket, creating the
// bucket (history 1, with per-key TTL and the marker TTL of [MarkerTTL]) if
// it does not exist. It returns an error if the bucket cannot be created or
// read within ctx (one wrapping [ErrUnavailable] at once while the
// connection is down), or if an explicit MarkerTTL differs from the bound
// bucket's. A server that fails to set up the bucket's storage for a
// moment, as it does right after a bucket of the same name was deleted, is
// asked again a few times within ctx. Invalid options panic (see [Option]).
func New[T any](ctx context.Context, js jetstream.JetStream, bucket string, opts ...Option) (*Store[T], error) {
	check.Context(ctx, "natsstore")
	cfg := config{markerTTL: store.DefaultVersionRetention, replicas: 1, bulk: 16, inFlight: 256, logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Store[T]{
		js: js, bucket: bucket, prefix: "$KV." + bucket + ".", codec: store.JSON[T]{},
		bulk: cfg.bulk, inFlight: cfg.inFlight, logger: cfg.logger,
		watches: make(map[*watch]struct{}), closeDone: make(chan struct{}),
	}
	if cfg.codec != nil {
		c, ok := cfg.codec.(store.Codec[T])
		check.That(ok, "natsstore", "WithCodec must be given a store.Codec[%T], got %T", *new(T), cfg.codec)
		s.codec = c
	}
	if !js.Conn().IsConnected() {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, ErrUnavailable)
	}
	kv, err := openBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Replicas: cfg.replicas, LimitMarkerTTL: cfg.markerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, err)
	}
	s.kv = kv
	if s.stream, err = js.Stream(ctx, "KV_"+bucket); err != nil {
		return nil, fmt.Errorf("natsstore: bucket %q: %w", bucket, err)
	}
	info := s.stream.CachedInfo().Config
	s.leader = info.Replicas > 1
	s.markerTTL = info.SubjectDeleteMarkerTTL
	s.ttl = info.AllowMsgTTL && s.markerTTL > 0
	if cfg.markerSet && s.markerTTL != cfg.markerTTL {
		return nil, fmt.Errorf("natsstore: bucket %q has marker TTL %v, not the %v of MarkerTTL (which applies only when New creates the bucket)",
			bucket, s.markerTTL, cfg.markerTTL)
	}
	s.retention = retention(s.markerTTL, info.MaxAge)
	s.conn = watchConn(js.Conn())
	warnSlowFailure(ctx, s.logger, js.Conn())
	return s, nil
}

// errStoreFailed is JetStream's "error creating store for stream": the
// server could not set up a stream's storage, which happens for a moment
// after a stream of the same name was deleted (its files are still being
// moved away) and on a server short of time.
const errStoreFailed jetstream.ErrorCode = 10049

// openBucket creates the bucket, or opens it when it exists. A failure to
// create its storage is tried again a few times, a little later each time,
// within ctx: it passes once the server is done with a deleted bucket's
// files.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	const tries = 5
	wait := 50 * time.Millisecond
	for try := 1; ; try++ {
		kv, err := js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
		var apiErr *jetstream.APIError
		if err == nil || try == tries || !errors.As(err, &apiErr) || apiErr.ErrorCode != errStoreFailed {
			return kv, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait *= 2
	}
}

// warnSlowFailure logs, once per New, the client settings under which a
// dead or hung server costs callers a long wait instead of a load.
func warnSlowFailure(ctx context.Context, logger *slog.Logger, nc *nats.Conn) {
	const most = 10 * time.Second
	if ft := nc.Opts.FlusherTimeout; ft <= 0 || ft > most {
		logger.WarnContext(ctx, "natsstore: a server that stops reading holds every call on this connection, past its context, for the connection's FlusherTimeout; set nats.FlusherTimeout(time.Second)",
			"flusher_timeout", ft)
	}
	if d := nc.Opts.PingInterval * time.Duration(max(nc.Opts.MaxPingsOut, 1)); d > 3*most {
		logger.WarnContext(ctx, "natsstore: a hung server goes unnoticed for about PingInterval × MaxPingsOutstanding; set nats.PingInterval(5*time.Second)",
			"ping_interval", nc.Opts.PingInterval, "max_pings_outstanding", nc.Opts.MaxPingsOut)
	}
}

// retention is how long a bucket remembers a write of a key: its markers
// live for the marker TTL, and nothing outlives the bucket's max age; a
// bucket with neither forgets nothing.
func retention(markerTTL, maxAge time.Duration) time.Duration {
	r := time.Duration(math.MaxInt64)
	if markerTTL > 0 {
		r = markerTTL
	}
	if maxAge > 0 {
		r = min(r, maxAge)
	}
	return r
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

// begin checks what every call checks first (a nil context panics; a closed
// store or a lost connection fails at once) and returns ctx, also ended
// when the connection drops.
func (s *Store[T]) begin(ctx context.Context, op, key string) (context.Context, context.CancelFunc, error) {
	check.Context(ctx, "natsstore")
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("natsstore: %s %q: %w", op, key, ErrClosed)
	}
	return s.conn.bind(ctx, op, key)
}

// Get returns the entry of key, or false when it is absent, past its
// KeepUntil, or not decodable.
func (s *Store[T]) Get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	ctx, done, err := s.begin(ctx, "get", key)
	if err != nil {
		return store.Entry[T]{}, false, err
	}
	defer done()
	e, _, ok, err := s.read(ctx, key)
	return e, ok, err
}

// read reads the last message of key's data subject: the entry, if it is a
// live one, and its sequence (0 when the subject has no message).
func (s *Store[T]) read(ctx context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	token, hashed := encodeKey(key)
	m, err := s.lastMsg(ctx, s.prefix+"d."+token)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return store.Entry[T]{}, 0, false, nil
	case err != nil:
		return store.Entry[T]{}, 0, false, fmt.Errorf("natsstore: get %q: %w", key, failed(ctx, err))
	}
	v := store.Version(m.Sequence)
	if m.Header.Get(kvOp) != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return store.Entry[T]{}, v, false, nil // a delete or expiry marker
	}
	if hashed && m.Header.Get(keyHeader) != escape(key) {
		s.corrupt.Add(1)
		return store.Entry[T]{}, v, false, nil
	}
	e, err := store.Decode(s.codec, m.Data)
	if err != nil {
		s.corrupt.Add(1)
		return store.Entry[T]{}, v, false, nil
	}
	if !e.Live(time.Now()) {
		return store.Entry[T]{}, v, false, nil
	}
	return e, v, true, nil
}

// lastMsg returns the last message of subject. With one replica, it is a
// direct get, which the server holding the stream answers. With more, it
// asks the stream's leader, as [jetstream.Stream.GetLastMsgForSubject]
// would on a stream without direct gets: a follower answers a direct get
// with what it has applied, which may lag the change that a watch has just
// reported, so a near tier filled from it could keep the value the change
// replaced.
func (s *Store[T]) lastMsg(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	if !s.leader {
		return s.stream.GetLastMsgForSubject(ctx, subject)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, err
	}
	reply, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+s.stream.CachedInfo().Config.Name, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err = json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("message of %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, fmt.Errorf("message of %s: empty answer", subject)
	}
	m := resp.Message
	var hdr nats.Header
	if len(m.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(m.Header); err != nil {
			return nil, fmt.Errorf("message of %s: %w", subject, err)
		}
	}
	return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Header: hdr, Data: m.Data, Time: m.Time}, nil
}

// Set writes e under key, with a per-key TTL up to e.KeepUntil when the
// bucket allows it. An entry already past its KeepUntil removes the key.
func (s *Store[T]) Set(ctx context.Context, key string, e store.Entry[T]) error {
	ctx, done, err := s.begin(ctx, "set", key)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.write(ctx, key, &e, nil)
	return err
}

// SetVersioned is [Store.Set], and returns the version (the revision) the
// write gave key, the one its change reports ([store.VersionReporter]).
func (s *Store[T]) SetVersioned(ctx context.Context, key string, e store.Entry[T]) (store.Version, error) {
	ctx, done, err := s.begin(ctx, "set", key)
	if err != nil {
		return 0, err
	}
	defer done()
	return s.write(ctx, key, &e, nil)
}

// write publishes e under key, with the expected last sequence of the key's
// subject when expect is not nil, and returns the version it wrote.
func (s *Store[T]) write(ctx context.Context, key string, e *store.Entry[T], expect *store.Version) (store.Version, error) {
	p, err := s.setPub(key, e, expect)
	if err != nil {
		return 0, fmt.Errorf("natsstore: set %q: %w", key, err)
	}
	return s.send(ctx, key, p)
}

// send publishes p, a write of key, and returns the version it wrote.
func (s *Store[T]) send(ctx context.Context, key string, p pub) (store.Version, error) {
	ack, err := s.publish(ctx, p.m, p.opts...)
	if err != nil {
		return 0, fmt.Errorf("natsstore: %s %q: %w", p.op, key, conflict(ctx, err))
	}
	return store.Version(ack.Sequence), nil
}

// A pub is a message to publish, with its options, and what it does to its
// key ("set" or "delete"), for errors.
type pub struct {
	op   string
	m    *nats.Msg
	opts []jetstream.PublishOpt
}

// setPub returns the message that stores e under key, with the expected
// last sequence of the key's subject when expect is not nil: the delete of
// key when the bucket expires keys and e's KeepUntil has passed.
func (s *Store[T]) setPub(key string, e *store.Entry[T], expect *store.Version) (pub, error) {
	var opts []jetstream.PublishOpt
	if s.ttl && !e.KeepUntil.IsZero() {
		d := time.Until(e.KeepUntil)
		if d <= 0 {
			return s.deletePub(key, expect), nil
		}
		opts = append(opts, jetstream.WithMsgTTL(ceilSecond(d)))
	}
	data, err := store.Encode(s.codec, *e)
	if err != nil {
		return pub{}, err
	}
	token, hashed := encodeKey(key)
	m := &nats.Msg{Subject: s.prefix + "d." + token, Data: data, Header: nats.Header{}}
	if hashed {
		m.Header.Set(keyHeader, escape(key))
	}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(uint64(*expect)))
	}
	return pub{op: "set", m: m, opts: opts}, nil
}

// deletePub returns the purge of key's data subject, with the expected last
// sequence when expect is not nil. The marker names the key when the key is
// hashed, so that a watch can report it, and expires after the bucket's
// marker TTL where the bucket allows it.
func (s *Store[T]) deletePub(key string, expect *store.Version) pub {
	token, hashed := encodeKey(key)
	m := purgeMsg(s.prefix + "d." + token)
	if hashed {
		m.Header.Set(keyHeader, escape(key))
	}
	var opts []jetstream.PublishOpt
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(uint64(*expect)))
	}
	if s.ttl {
		opts = append(opts, jetstream.WithMsgTTL(s.markerTTL))
	}
	return pub{op: "delete", m: m, opts: opts}
}

// errWrongLastSequence is the server's refusal of a write whose expected
// last sequence another write of the subject, still being replicated, may
// change: JetStream API error 10164, "wrong last sequence" without a
// sequence. A clustered stream answers it to contention where a single
// server answers jetstream.ErrKeyExists (10071).
var errWrongLastSequence = &jetstream.APIError{ErrorCode: 10164}

// contended reports whether err is the server's refusal of an expected last
// sequence, in the form of a single server or of a cluster: another write
// of the subject came first, or is under way.
func contended(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, errWrongLastSequence)
}

// conflict maps the server's refusal of an expected last sequence to
// store.ErrConflict.
func conflict(ctx context.Context, err error) error {
	if contended(err) {
		return store.ErrConflict
	}
	return failed(ctx, err)
}

// publish sends m, refusing up front a message over the max payload (the
// client would refuse it too, but its error does not say which limit).
func (s *Store[T]) publish(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := s.fits(m); err != nil {
		return nil, err
	}
	ack, err := s.js.PublishMsg(ctx, m, opts...)
	if errors.Is(err, nats.ErrMaxPayload) {
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return ack, err
}

// fits returns an error wrapping ErrTooLarge if m would exceed the server's
// max payload.
func (s *Store[T]) fits(m *nats.Msg) error {
	size := len(m.Data) + 256 // room for the headers the client adds
	for k, vs := range m.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if limit := s.js.Conn().MaxPayload(); limit > 0 && int64(size) > limit {
		return fmt.Errorf("%w: %d bytes, max payload %d", ErrTooLarge, len(m.Data), limit)
	}
	return nil
}

// Delete removes key, leaving a marker for the bucket's marker TTL.
// Deleting a missing key is not an error; it changes the key's version too.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	ctx, done, err := s.begin(ctx, "delete", key)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.send(ctx, key, s.deletePub(key, nil))
	return err
}

// purgeMsg is the KV client's purge marker for subject: it rolls up (drops)
// every earlier message of the subject.
func purgeMsg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(kvOp, kvPurge)
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	return m
}

// purge publishes a purge marker that expires after ttl where the bucket
// allows it.
func (s *Store[T]) purge(ctx context.Context, m *nats.Msg, ttl time.Duration, opts ...jetstream.PublishOpt) error {
	if s.ttl {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	_, err := s.publish(ctx, m, opts...)
	return err
}

// Close closes the store's watches and stops the goroutine that follows the
// connection's status, and waits for them, up to ctx. Every call waits for
// the same shutdown; when ctx ends first it returns an error wrapping
// ctx.Err(), and the shutdown goes on. It leaves the bucket, the JetStream
// context and the connection alone. After Close every method returns
// [ErrClosed].
func (s *Store[T]) Close(ctx context.Context) error {
	check.Context(ctx, "natsstore")
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		ws := make([]*watch, 0, len(s.watches))
		for w := range s.watches {
			ws = append(ws, w)
		}
		s.mu.Unlock()
		go func() {
			for _, w := range ws {
				_ = w.Close()
			}
			s.conn.close()
			close(s.closeDone)
		}()
	})
	select {
	case <-s.closeDone:
		return nil
	default:
	}
	select {
	case <-s.closeDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsstore: close: %w", ctx.Err())
	}
}
