// Command load shows what herd does for the user service and its database:
// it runs the service of package userservice twice on a loopback port,
// without herd and with it, over the same database, sends each the same
// steady stream of GET /users/{id} for users drawn from a Zipf
// distribution, and prints the database's queries a second (read from the
// service's /metrics) and the latency its clients saw.
//
//	go run ./cmd/load                                  # SQLite in a temporary directory
//	go run ./cmd/load --rate 5000 --duration 30s
//	go run ./cmd/load --db postgres://user:pass@localhost/users --redis redis://localhost:6379/0
//
// Each round starts with a warm-up (--warmup, 3s) that is not measured, so
// that the numbers are those of a running service, not of its cold start.
// The clients are open-loop: a request is sent on time whether or not the
// earlier ones have returned, as users do; a request still waiting for its
// answer after --timeout fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/herdcache/herd/examples/userservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is a load run.
type config struct {
	rate     int
	duration time.Duration
	warmup   time.Duration
	timeout  time.Duration
	users    int
	zipf     float64
	db       string
	redis    string
	nats     string
}

// maxConns bounds the connections to the service, and maxInFlight the
// requests waiting for an answer, some of them for a connection: past it,
// a request is not sent and counts as an error. Both keep the file
// descriptors of the client and the service, which share the process,
// well under a common limit of 1,024 when the service falls behind.
const (
	maxConns    = 256
	maxInFlight = 512
)

// run runs the rounds and prints the table; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.rate, "rate", 1000, "requests a second")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each round is measured")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "how long each round runs before it is measured")
	fs.DurationVar(&c.timeout, "timeout", time.Second, "a request's deadline")
	fs.IntVar(&c.users, "users", 10_000, "users in the database, and ids asked for")
	fs.Float64Var(&c.zipf, "zipf", 1.1, "exponent of the Zipf distribution of the ids asked for, > 1")
	fs.StringVar(&c.db, "db", "", "sqlite:<path> or postgres://... (default: an SQLite file in a temporary directory)")
	fs.StringVar(&c.redis, "redis", "", "redis://host:port/db: herd on the two-level store over this Redis")
	fs.StringVar(&c.nats, "nats", "", "nats://host:port: herd on the two-level store over this NATS JetStream")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case c.rate < 1 || c.rate > 1_000_000:
		fmt.Fprintf(stderr, "load: --rate must be between 1 and 1,000,000, got %d\n", c.rate)
		return 2
	case c.duration <= 0 || c.warmup < 0 || c.timeout <= 0:
		fmt.Fprintln(stderr, "load: --duration and --timeout must be positive, --warmup at least 0")
		return 2
	case c.users < 2 || !(c.zipf > 1):
		fmt.Fprintln(stderr, "load: --users must be at least 2, --zipf greater than 1")
		return 2
	}
	dbName := c.db
	if c.db == "" {
		dir, err := os.MkdirTemp("", "userservice-load-")
		if err != nil {
			fmt.Fprintf(stderr, "load: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		c.db = "sqlite:" + filepath.Join(dir, "users.db")
		dbName = "SQLite, a file in a temporary directory"
	}
	store := "memory"
	switch {
	case c.redis != "":
		store = "the two-level store over " + redacted(c.redis)
	case c.nats != "":
		store = "the two-level store over " + redacted(c.nats)
	}
	fmt.Fprintf(stdout, "load: %s GET /users/{id} a second for %v per round (after a %v warm-up), %s users (Zipf %v), timeout %v\n",
		count(float64(c.rate)), c.duration, c.warmup, count(float64(c.users)), c.zipf, c.timeout)
	fmt.Fprintf(stdout, "database: %s; herd on %s\n\n", redacted(dbName), store)

	var results []result
	for _, noCache := range []bool{true, false} {
		name := map[bool]string{true: "without herd", false: "with herd"}[noCache]
		fmt.Fprintf(stderr, "load: %s, %v\n", name, c.warmup+c.duration)
		r, err := round(ctx, &c, noCache)
		if err != nil {
			fmt.Fprintf(stderr, "load: %s: %v\n", name, err)
			if ctx.Err() != nil {
				return 130
			}
			return 1
		}
		r.name = name
		results = append(results, r)
	}
	if err := table(stdout, results); err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	return 0
}

// result is what one round measured.
type result struct {
	name          string
	sent, errors  int
	queries       float64 // database queries during the measured time
	elapsed       time.Duration
	p50, p99, max time.Duration
}

// round opens the service, serves it on a loopback port, sends it the load
// and returns what it measured.
func round(ctx context.Context, c *config, noCache bool) (result, error) {
	svc, err := userservice.Open(ctx, userservice.Config{
		Database: c.db, Redis: c.redis, NATS: c.nats, NoCache: noCache, Users: c.users,
	})
	if err != nil {
		return result{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Close(cctx)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: maxConns, MaxConnsPerHost: maxConns}}
	defer client.CloseIdleConnections()

	if c.warmup > 0 {
		if _, werr := send(ctx, c, client, base, c.warmup, 1); werr != nil {
			return result{}, werr
		}
	}
	before, err := queries(ctx, client, base)
	if err != nil {
		return result{}, err
	}
	r, err := send(ctx, c, client, base, c.duration, 2)
	if err != nil {
		return result{}, err
	}
	after, err := queries(ctx, client, base)
	if err != nil {
		return result{}, err
	}
	r.queries = after - before
	return r, nil
}

// send sends c.rate requests a second to base for d, open-loop, and
// returns what they measured once every one has returned. Seed tells the
// warm-up's ids from the measured ones.
func send(ctx context.Context, c *config, client *http.Client, base string, d time.Duration, seed uint64) (result, error) {
	rng := rand.New(rand.NewPCG(seed, 42))
	zipf := rand.NewZipf(rng, c.zipf, 1, uint64(c.users-1))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		errs     atomic.Int64
		inFlight atomic.Int64
	)
	every := time.Second / time.Duration(c.rate)
	start := time.Now()
	end := start.Add(d)
	timer := time.NewTimer(0)
	defer timer.Stop()
	sent := 0
	for next := start; next.Before(end); next = next.Add(every) {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				wg.Wait()
				return result{}, ctx.Err()
			case <-timer.C:
			}
		}
		sent++
		if inFlight.Load() >= maxInFlight {
			errs.Add(1)
			continue
		}
		id := strconv.FormatUint(zipf.Uint64()+1, 10)
		inFlight.Add(1)
		wg.Go(func() {
			defer inFlight.Add(-1)
			t0 := time.Now()
			ok := get(ctx, client, base+"/users/"+id, c.timeout)
			took := time.Since(t0)
			if !ok {
				errs.Add(1)
			}
			mu.Lock()
			lat = append(lat, took)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := result{sent: sent, errors: int(errs.Load()), elapsed: d}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		r.p50, r.p99, r.max = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
	}
	return r, nil
}

// get GETs url within timeout and reports whether it answered 200 with a
// body.
func get(ctx context.Context, client *http.Client, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return err == nil && n > 0 && resp.StatusCode == http.StatusOK
}

// queries reads userservice_db_queries_total from the service's /metrics.
func queries(ctx context.Context, client *http.Client, base string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "userservice_db_queries_total "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("/metrics has no userservice_db_queries_total")
}

// table prints the rounds, and what herd changed.
func table(w io.Writer, rs []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\trequests/s\tdb queries/s\tp50\tp99\tmax\terrors\t")
	for _, r := range rs {
		s := r.elapsed.Seconds()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%v\t%s\t\n", r.name, count(float64(r.sent)/s), count(r.queries/s),
			ms(r.p50), ms(r.p99), ms(r.max), count(float64(r.errors)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rs) == 2 && rs[1].queries > 0 {
		without, with := rs[0], rs[1]
		_, err := fmt.Fprintf(w, "\nwith herd: %.0f× fewer database queries; p99 %v against %v without.\n",
			without.queries/with.queries, ms(with.p99), ms(without.p99))
		return err
	}
	return nil
}

// ms rounds a latency for the table.
func ms(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 100*time.Microsecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// count formats n rounded, with thousands separators: 12,345.
func count(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// redacted is a URL without its password.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}
