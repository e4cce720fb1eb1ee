module github.com/herdcache/herd/examples

go 1.25.0

replace (
	github.com/herdcache/herd => ../
	github.com/herdcache/herd/herdprom => ../herdprom
	github.com/herdcache/herd/natsstore => ../natsstore
	github.com/herdcache/herd/redisstore => ../redisstore
)
