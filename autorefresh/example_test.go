package autorefresh_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd/autorefresh"
)

type Job struct {
	State string
	Done  bool
}

func Example() {
	// syncJobs asks the job service for the state of a batch of jobs. Here
	// every job it sees has finished.
	syncJobs := func(ctx context.Context, batch []autorefresh.Item[string, Job]) ([]autorefresh.Result[string, Job], error) {
		results := make([]autorefresh.Result[string, Job], 0, len(batch))
		for _, it := range batch {
			results = append(results, autorefresh.Result[string, Job]{
				ID: it.ID, Action: autorefresh.Update, Value: Job{State: "succeeded", Done: true},
			})
		}
		return results, nil
	}

	synced := make(chan struct{}, 1)
	c := autorefresh.New(syncJobs,
		autorefresh.ResyncPeriod(30*time.Second),
		autorefresh.BatchSize(50),
		autorefresh.Parallelism(8),
		autorefresh.RateLimit(20, 1), // batches per second
		autorefresh.SyncOnCreate(),
		autorefresh.IsTerminal(func(j Job) bool { return j.Done }),
		autorefresh.WithObserver(autorefresh.ObserverFunc(func(e autorefresh.Event) {
			if e.Kind == autorefresh.EventSync {
				select { // an Observer must not block
				case synced <- struct{}{}:
				default:
				}
			}
		})),
	)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	defer c.Close(ctx)

	job, created, err := c.GetOrCreate("job-1", Job{State: "queued"})
	fmt.Println(job.State, created, err)

	<-synced // SyncOnCreate: synced at once, not in 30s
	job, _ = c.Get("job-1")
	fmt.Println(job.State, c.Len())
	// Output:
	// queued true <nil>
	// succeeded 1
}
