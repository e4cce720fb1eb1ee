// Package userservice is a small HTTP service of user profiles in front of
// a SQL database, with herd between the two: a service to copy.
//
// A profile is a user's name and email with the count and the sum of their
// orders, one SQL query with a join and an aggregate. The service answers
//
//	GET /users/{id}   the profile as JSON; 404 for an id that does not exist
//	PUT /users/{id}   {"name": "..."}: renames the user, then drops the cached profile
//	GET /metrics      Prometheus metrics: herd's (herdprom) and the database's queries
//	GET /healthz      200 once the service is up
//
// The database is SQLite in a file (through modernc.org/sqlite, pure Go:
// nothing to install), seeded with users and orders when empty, or Postgres
// when the URL says so (through github.com/jackc/pgx/v5). The cache is
// herd over the memory store by default, or over the two-level store
// (store/tiered: memory near tier, Redis or NATS JetStream far tier) when a
// Redis or NATS URL is given, so that every instance of the service shares
// one cache, loads a profile once across the fleet, and drops its copy when
// another instance writes.
package userservice

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/herdprom"
)

// A Profile is what GET /users/{id} answers.
type Profile struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	Orders     int64  `json:"orders"`
	TotalCents int64  `json:"total_cents"`
}

// Config says where the service keeps its data.
type Config struct {
	// Database is "sqlite:<path>" for an SQLite file (created and seeded
	// when missing) or a Postgres URL, "postgres://user:pass@host/db"
	// (tables created and seeded when missing).
	Database string
	// Redis, a redis:// URL, or NATS, a nats:// URL, puts the cache on the
	// two-level store over that server, shared by every instance that
	// names it; with neither, the cache is in memory, per instance. At
	// most one of them.
	Redis, NATS string
	// NoCache makes every request query the database: the service as it
	// would be without herd, to compare.
	NoCache bool
	// Users is how many users an empty database is seeded with (default
	// 10,000), each with 0 to 19 orders.
	Users int
	// Logger logs the cache's failures (default slog.Default()).
	Logger *slog.Logger
}

// Service is the service: its database, its cache and its handler. Close
// it when done.
type Service struct {
	db      *sql.DB
	cache   *herd.Cache[Profile] // nil with NoCache
	metrics *herdprom.Collector  // the cache's; nil with NoCache
	shared  *sharedStore         // nil without Redis or NATS
	queries atomic.Uint64
	handler http.Handler
}

// Open connects to the database (seeding it when empty) and to the Redis or
// NATS server if the config names one, and returns the service. An error
// says which of them failed.
func Open(ctx context.Context, c Config) (*Service, error) {
	if c.Redis != "" && c.NATS != "" {
		return nil, errors.New("userservice: a Redis URL or a NATS URL, not both")
	}
	if c.Users == 0 {
		c.Users = 10_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	db, err := openDB(ctx, c.Database, c.Users)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db}
	if !c.NoCache {
		if err := s.openCache(ctx, &c); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

// openCache builds the cache: herd with stale-while-revalidate, so that a
// profile older than a minute is served at once while one refresh runs
// (a rename through the service drops it at once), and stale-if-error, so
// that a profile is served for an hour while the database fails; unknown
// ids are cached as such for 30 seconds.
func (s *Service) openCache(ctx context.Context, c *Config) error {
	opts := []herd.Option{
		herd.TTL(10 * time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour),
		herd.NegativeTTL(30 * time.Second), herd.LoadTimeout(2 * time.Second),
		herd.StoreTimeout(200 * time.Millisecond), herd.WithLogger(c.Logger),
	}
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	if st.locker != nil {
		// One instance of the fleet loads a profile; the others wait for
		// its value in the shared store.
		opts = append(opts, herd.WithLocker(st.locker, 5*time.Second))
		s.shared = st
	}
	col := herdprom.NewCollector("users")
	s.cache = herd.New(st.store, append(opts, herd.WithObserver(col))...)
	col.Watch(s.cache)
	s.metrics = col
	return nil
}

// Close closes the cache, the shared store's connection and the database,
// within ctx.
func (s *Service) Close(ctx context.Context) error {
	var errs []error
	if s.cache != nil {
		errs = append(errs, s.cache.Close(ctx))
	}
	if s.shared != nil {
		errs = append(errs, s.shared.close(ctx))
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// Handler is the service's HTTP handler.
func (s *Service) Handler() http.Handler { return s.handler }

// Queries is the number of database queries the service has made.
func (s *Service) Queries() uint64 { return s.queries.Load() }

func (s *Service) routes() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "userservice_db_queries_total",
		Help: "Queries the service made to its database.",
	}, func() float64 { return float64(s.queries.Load()) }))
	if s.metrics != nil {
		reg.MustRegister(s.metrics)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", s.getUser)
	mux.HandleFunc("PUT /users/{id}", s.putUser)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

func (s *Service) getUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		http.Error(w, "id: not a number", http.StatusBadRequest)
		return
	}
	var (
		p   Profile
		err error
	)
	if s.cache == nil {
		p, err = s.loadProfile(r.Context(), id)
	} else {
		p, err = s.cache.Get(r.Context(), id, s.loadProfile)
	}
	switch {
	case errors.Is(err, herd.ErrNotFound):
		http.Error(w, "no such user", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}

func (s *Service) putUser(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "id: not a number", http.StatusBadRequest)
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	if derr := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); derr != nil || body.Name == "" {
		http.Error(w, `want {"name": "..."}`, http.StatusBadRequest)
		return
	}
	s.queries.Add(1)
	res, err := s.db.ExecContext(r.Context(), `UPDATE users SET name = $1 WHERE id = $2`, body.Name, id)
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	// The database has the new name: drop the cached profile, on every
	// instance sharing the store, so that the next read loads it. A Delete
	// that lands while a load of the profile is in flight wins over it.
	if s.cache != nil {
		if err := s.cache.Delete(r.Context(), strconv.FormatInt(id, 10)); err != nil {
			http.Error(w, "renamed, but the cache could not drop the old profile", http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// profileQuery reads a profile: the user and the sum of their orders.
const profileQuery = `
SELECT u.id, u.name, u.email, COUNT(o.id), CAST(COALESCE(SUM(o.total_cents), 0) AS BIGINT)
FROM users u LEFT JOIN orders o ON o.user_id = u.id
WHERE u.id = $1
GROUP BY u.id, u.name, u.email`

// loadProfile is the cache's loader: one query. An id with no user is
// herd.ErrNotFound, which the cache keeps for its NegativeTTL.
func (s *Service) loadProfile(ctx context.Context, id string) (Profile, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return Profile{}, fmt.Errorf("user %q: %w", id, herd.ErrNotFound)
	}
	s.queries.Add(1)
	var p Profile
	err = s.db.QueryRowContext(ctx, profileQuery, n).Scan(&p.ID, &p.Name, &p.Email, &p.Orders, &p.TotalCents)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, fmt.Errorf("user %d: %w", n, herd.ErrNotFound)
	}
	return p, err
}
