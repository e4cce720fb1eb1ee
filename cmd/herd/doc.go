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
//	go run ./cmd/herd --clients 200 --keys 10000 --outage 8s --html report.html
//	go run ./cmd/herd --json > run.json
//	go run ./cmd/herd --instances 3   # three caches sharing a store and a lock
//
// Usage:
//
//	herd [flags]
//
// The flags:
//
//	--duration d     how long the clients send requests (default 20s)
//	--clients n      clients per setup, each sending 100 requests a second (default 64)
//	--keys n         distinct keys, drawn with a Zipf distribution (default 1000)
//	--latency d      median latency of the source (default 50ms)
//	--errors f       share of source calls that fail, in [0, 1) (default 0.01)
//	--outage d       how long the source is down, in the middle of the run; 0 for never (default 5s)
//	--ttl d          how long a cached value is fresh (default 5s)
//	--timeout d      a client's deadline for one request (default 1s)
//	--instances n    herd caches per herd setup, sharing one store and one lock (default 1)
//	--store s        where the herd caches keep their entries: memory (default memory)
//	--seed n         seed of the random draws (default 1)
//	--json           print the results as JSON instead of a table
//	--html file      also write a self-contained HTML page with charts over time
//
// Progress goes to standard error: a bar on a terminal, plain lines
// elsewhere or when CI=true. A bad flag or store is a one-line error and
// exit status 2; an interrupted run exits with status 130.
//
// --store redis://host:port/db or --store nats://host:port runs the herd
// setups over that server instead of the in-memory store, each setup under
// names of its own that the run removes at its end; a server that does not
// answer within 3 seconds is a one-line error and exit status 2.
package main
