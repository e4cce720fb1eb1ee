// Command herd shows what herd does to a source of truth under load.
//
// It runs a scenario side by side in four setups and prints a table of what
// each cost the source and what its clients saw:
//
//   - no cache: every request calls the source;
//   - plain TTL map: a map and a mutex, what people write by hand;
//   - herd (TTL): a herd cache with a TTL: one load per key at a time;
//   - herd (SWR+SIE): herd with stale-while-revalidate, stale-if-error and a
//     load timeout.
//
// The source has a log-normal latency, fails a share of its calls, and goes
// down for a while in the middle of the run: a call then hangs, and fails.
// Clients send requests at a steady rate for keys drawn from a Zipf
// distribution, each with a deadline. With no flags, the run takes about 20
// seconds on the in-memory store:
//
//	go run ./cmd/herd
//	go run ./cmd/herd --keys 10000 --outage 8s --html report.html
//	go run ./cmd/herd --json > run.json
//	go run ./cmd/herd --instances 3   # three caches sharing a store and a lock
//	go run ./cmd/herd --store nats:embedded --instances 3
//	go run ./cmd/herd --store redis:local --instances 3
//	go run ./cmd/herd --store redis://127.0.0.1:6379/0 --instances 3
//
// Usage:
//
//	herd [flags]
//
// The flags:
//
//	--duration d     how long the clients send requests (default 20s)
//	--clients n      clients per setup, each sending 100 requests a second
//	                 (default 64; 16 with a --store other than memory)
//	--keys n         distinct keys, drawn with a Zipf distribution (default 1000)
//	--latency d      median latency of the source (default 50ms)
//	--errors f       share of source calls that fail, in [0, 1) (default 0.01)
//	--outage d       how long the source is down, in the middle of the run; 0 for never
//	                 (default a quarter of --duration: 5s)
//	--ttl d          how long a cached value is fresh (default 5s)
//	--timeout d      a client's deadline for one request (default 1s)
//	--instances n    herd caches per herd setup, sharing one store and one lock (default 1)
//	--store s        where the herd caches keep their entries: memory; nats:embedded, a
//	                 nats-server run in the command; redis:local, the redis-server on PATH
//	                 run for the command; redis://host:port/db or nats://host:port, a
//	                 server of yours (default memory)
//	--seed n         seed of the random draws (default 1)
//	--json           print the results as JSON instead of a table
//	--html file      also write a self-contained HTML page with charts over time
//	--metrics-addr a serve the Prometheus metrics of the herd caches at http://a/metrics
//	                 while the run lasts, a being host:port such as :9090 (not with --fleet)
//	--store-outage d how long the --store server is unreachable in the store outage phase:
//	                 after the run, herd caches over the server, their client at its defaults,
//	                 take Gets while a proxy in front of the server cuts it off, then restores
//	                 it; with --fleet, each setup over the server gets such a phase. 0 for
//	                 none; only with a --store server, as the memory store has none to cut
//	                 (default 3s)
//	--store-fault f  how the server is unreachable in the outage phase: hang (connections
//	                 stay open, nothing is answered: a stopped server, a partition) or
//	                 refuse (connections are closed and refused: a server that exited)
//	                 (default hang)
//	--fleet          run the fleet scenario instead: --instances caches (default 3) read
//	                 and a writer sets keys through them, in three setups (memory per
//	                 instance, the --store alone, two-level over it), 5s each by default
//	--writes n       writes a second in the fleet scenario (default 50)
//	--allowance d    delivery time granted to a write in the fleet scenario before a read
//	                 of the older value counts as stale (default 50ms)
//	--batch          run the batch scenario instead: --clients Get new keys through herd
//	                 without and with herd.Batch, and the table shows the source calls
//	                 a second of each, 5s each by default
//	--max-batch n    keys per source call in the batch scenario (default 100)
//	--max-wait d     how long a batch waits for more keys in the batch scenario (default 2ms)
//	--soak           run the long run instead: herd (SWR+SIE) alone for --duration (default
//	                 10m, no outage), sampling the live heap, goroutines, open files and
//	                 store keys, with a verdict on any that grows in the second half
//	--sample d       time between two samples of the long run (default --duration / 120,
//	                 at least 100ms)
//	--check          run the history check instead: 3 two-level instances over the --store
//	                 server (not memory), each through a proxy of its own, and a plain writer
//	                 read and write while one instance stalls, another is partitioned, every
//	                 instance is cut (and, on Redis, the tracking connections are killed);
//	                 every call is checked for bounded staleness, read-your-writes and
//	                 monotonic reads
//	--check-calls n  calls of each phase of the history check, healthy or under a fault;
//	                 larger for a longer check (default 2000)
//
// Progress goes to standard error: a bar on a terminal, plain lines
// elsewhere or when CI=true.
//
// # Stores
//
// --store nats:embedded runs the herd setups over a nats-server with
// JetStream that the command starts in its own process, on a free loopback
// port, storing in a temporary directory that it removes at the end:
// nothing to install. --store redis:local does the same with the
// redis-server found on PATH (Redis 6 or newer; apt-get install
// redis-server, or brew install redis), started with no persistence.
//
// --store redis://host:port/db (or rediss://) and --store nats://host:port
// (or tls://) run the herd setups over a server of yours instead: Redis 6
// or newer (client tracking), nats-server 2.11 or newer with JetStream
// (per-message TTLs; an older one is a one-line error). Each instance of a herd setup connects on its own, as a process of
// a fleet would, with the client settings that the redisstore and natsstore
// packages recommend; the instances of a setup share its keys (Redis) or
// bucket (NATS JetStream), and the run removes them at its end. Every herd
// request is then a round trip to the server, so the default load is scaled
// down to 16 clients per setup, and the output says so; --clients sets it.
// A server that does not answer within 3 seconds is a one-line error.
//
// # Store outage
//
// After a run over a --store server, the command runs a store outage phase
// (--store-outage, default 3s; 0 for none). It shows what a dead store
// costs: --instances herd caches (TTL --ttl, a lock) over the server, each
// on a client of its own at the client's defaults (go-redis v9: read
// timeout 3s, 3 retries, context deadlines not applied to the socket;
// nats.go: ping every 2 minutes, reconnect every 2s), and herd at its
// defaults (StoreTimeout 1s, StoreBackoff 100ms doubling to 10s). --clients
// callers each send a Get every 10ms for a key of --keys, with a 5s
// deadline, through a loopback proxy that the command puts in front of the
// server; the loader takes --latency. After 2s the proxy cuts the server off
// for --store-outage: with --store-fault hang (the default) it takes
// connections and holds every byte, as a stopped server or a partition
// does; with refuse it closes the connections and refuses new ones, as
// when the server has exited. Then it restores the server, and the phase
// goes on for 3s, and until every cache has marked its store up again.
//
// A Get counts in the window it was sent in: store up; cut, until marked
// down (its cache had not yet marked the store down); cut, marked down;
// store back. For each window the table gives the Gets' p50, p99 and max,
// where their answers came from (the store, a load), the slow Gets (those
// that waited on the store), and the caches' loader calls, store calls
// skipped (Stats.StoreSkipped) and store errors. Under it, lines say when
// the store was marked down and up (Stats.StoreDowns, StoreUps), whether
// the first callers paid at most one StoreTimeout (and a load), what the
// Gets paid once the store was marked down, and how the store served again
// after it came back. --json has it under store_outage; the --html page
// adds a section with the table and charts of the Get latency and of the
// answers over the phase.
//
// On the memory store the phase does not run: the store is in the
// process, with no server to cut; the output says so.
//
// # Fleet
//
// --fleet runs another scenario: a fleet of herd instances (--instances,
// default 3) with writes in the mix. Readers (--clients, default 6, spread
// over the instances) each read up to 1,000 random keys a second through
// their instance, and a writer sets keys (--writes a second, default 50),
// each through a random instance, with a loader that reads the latest
// value written. It runs three setups one after another, for a third of
// --duration each (default 5s):
//
//   - memory per instance: each instance its own memory store;
//   - far tier only: every instance on the --store server (its own
//     connection), or with no --store a memory store that the instances
//     share, standing for a server;
//   - two-level: store/tiered per instance over that shared store, kept
//     coherent by its change stream (Redis client tracking, a NATS KV watch).
//
// For each setup it prints reads a second, read latency (p50, p99), and
// the stale reads after a write: reads that began more than --allowance
// (default 50ms, the change stream's delivery time granted to a write)
// after a write of their key had completed, and returned an older value.
// Memory per instance serves such values until the TTL ends; two-level
// serves none, at the read latency of memory rather than of the server:
//
//	go run ./cmd/herd --fleet
//	go run ./cmd/herd --fleet --store nats:embedded --html fleet.html
//	go run ./cmd/herd --fleet --store redis://127.0.0.1:6379/0 --json
//
// Over a --store server, each setup over the far tier (far tier only,
// two-level) then gets an outage phase: a fleet of its own, whose
// instances reach the server through one proxy, runs the same readers and
// writer for 1s, then for --store-outage (default 3s) the server is
// unreachable from every instance (--store-fault), then reachable again
// for 3s. A second table gives, per setup and window, the reads, their
// latency and errors, and from the caches' Stats the hits (for two-level,
// values its near tier served while the far tier was cut), loader calls,
// store errors and skipped store calls; and the stale reads, counted as
// above, in each window, the one after the outage included. The near tier
// serves what the code of the tiered store serves through an outage: the
// numbers change when that does. With no --store there is no server to
// cut, and the output says so.
//
// --latency, --errors and --outage do not apply to it. Its exit status is
// 0, or 1, 2 and 130 as below.
//
// # Long run
//
// --soak runs the herd (SWR+SIE) setup alone, over --store with
// --instances, for as long as --duration says (default 10 minutes; hours
// are fine), and samples every --sample: the process's live heap (as of
// the last GC), its goroutines, its open files (file descriptors, the
// store's connections included; on Linux) and the keys the run keeps in
// the store (memory: entries; Redis: keys under the run's prefix, counted
// with SCAN; NATS: the messages of the run's bucket). A resource may grow
// while the run warms up; one that still grows in the second half is
// suspect: a line is fitted through the samples of the second half, and a
// resource whose line rises by more than its limit (an absolute floor, and
// a share of its level), in a steady climb, is GROWING. The table and the
// page show each resource's samples and fitted line, and the verdict;
// the exit status is 5 when a resource grew:
//
//	go run ./cmd/herd --soak --duration 1h --store nats:embedded --instances 3 --html soak.html
//
// With nats:embedded the server runs in the command's process, and its
// heap, goroutines and files count too.
//
// # History check
//
// --check checks what a fleet of two-level stores reads while its
// connections fail. Over the --store server (the memory store has no
// connection to cut: --check on it is a flag error), it runs 3 herd caches,
// each over store/tiered (tiered.NewVersioned) over redisstore or natsstore
// on a client of its own that reaches the server through a proxy of its own,
// and a plain writer that sets and deletes keys in the store's format
// outside herd, as another program would (Redis: SET and DEL; NATS: KV Put
// and Delete). Every instance reads through its cache and its store and
// writes through both. After a healthy phase come the faults, each followed
// by a healthy phase: over Redis, the tracking connections killed (CLIENT
// KILL TYPE pubsub); then instance 1 stalled (its proxy hangs) and resumed;
// instance 2 partitioned (its proxy refuses) and restored; every instance
// cut at once and restored. A phase lasts --check-calls calls (default
// 2,000; larger for a longer check), a fault until its instances have
// failed calls and its proxy has been held for 300ms, and, once healed,
// until a write of the plain writer reaches each instance it touched.
//
// Every call is recorded and the history is checked: no read returns a
// value replaced more than the delivery bound (200ms) before it began, or
// the near tier's TTL (1s) and the bound while a fault of its instance
// lasts; every instance reads its own writes; no instance reads back in
// time. It prints a line per fault (its failed calls, and how long its
// instances took to be whole again), the history's figures (operations,
// stale reads, largest staleness, violations per rule), the first
// violations and a verdict, and exits with status 1 on any violation:
//
//	go run ./cmd/herd --check --store redis:local
//	go run ./cmd/herd --check --store nats:embedded --check-calls 20000
//
// The other flags but --store and --seed do not apply to it.
//
// # Is the run sound?
//
// The clients are open-loop: a request is due every 10ms per client,
// whatever became of the earlier ones. The command measures how late the
// machine sent each request: one sent more than a tenth of the client
// timeout after its time is late, one whose deadline passed before it could
// be sent is not sent at all. Under the table, a line says whether the load
// was delivered. If more than 1% of a setup's requests were late or not
// sent, it says LOAD NOT DELIVERED instead: the machine could not run the
// scenario, and every setup's numbers suffer. If a herd setup failed more
// than half of the requests sent to it, a FAILED line names it. The line
// that sums up what herd saved is printed only over a run with neither.
//
// # Exit status
//
//	0    the run was sound
//	1    an output could not be written, or --check found a violation or did not finish
//	2    a bad flag, store URL, or a store that does not answer
//	3    a herd setup failed more than half of its requests
//	4    the machine could not send the requests on time (and no herd setup failed)
//	5    a long run (--soak) saw a resource grow (and no herd setup failed)
//	130  interrupted (SIGINT or SIGTERM)
//
// The table is printed in cases 0, 3 and 4. go run reports any status but
// 0 as "exit status N" and itself exits with status 1; build the command
// (go build ./cmd/herd) to see the status.
package main
