module github.com/herdcache/herd

go 1.25.0

require (
	github.com/maypok86/otter/v2 v2.4.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.22.0
)

require golang.org/x/time v0.15.0
