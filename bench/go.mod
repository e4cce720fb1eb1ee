module github.com/herdcache/herd/bench

go 1.25.0

require (
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/herdcache/herd v0.0.0-00010101000000-000000000000
	github.com/jellydator/ttlcache/v3 v3.4.1
	github.com/maypok86/otter/v2 v2.4.0
	github.com/viccon/sturdyc v1.1.5
	golang.org/x/sync v0.22.0
)

require github.com/cespare/xxhash/v2 v2.3.0 // indirect

replace github.com/herdcache/herd => ../
