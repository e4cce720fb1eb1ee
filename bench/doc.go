// Package bench holds the benchmarks of herd against its peers on the same
// work: otter, sturdyc, ttlcache, and golang-lru's expirable LRU with
// x/sync's singleflight. It is a module of its own so that the core module
// does not depend on the peers.
//
// Run them with `make bench` at the root, or here with
//
//	go test -run '^$' -bench . -benchmem -count 6 | tee new.txt
//	benchstat -col /impl new.txt
package bench
