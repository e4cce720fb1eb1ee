// Command userservice serves user profiles from a SQL database through
// herd: the service of package userservice, on an HTTP port.
//
//	go run ./cmd/userservice                         # SQLite in a temporary directory, herd in memory
//	go run ./cmd/userservice --db sqlite:users.db    # an SQLite file of yours, created and seeded if missing
//	go run ./cmd/userservice --db postgres://user:pass@localhost/users
//	go run ./cmd/userservice --redis redis://localhost:6379/0   # herd on the two-level store over Redis
//	go run ./cmd/userservice --nats nats://localhost:4222       # or over NATS JetStream (nats-server 2.11+)
//	go run ./cmd/userservice --no-cache                         # every request queries the database
//
// Then:
//
//	curl localhost:8080/users/42
//	curl -X PUT -d '{"name": "Ada"}' localhost:8080/users/42
//	curl localhost:8080/metrics
//
// It stops on SIGINT or SIGTERM, letting requests in flight finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/herdcache/herd/examples/userservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "userservice: %v\n", err)
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, and shuts down.
func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("userservice", flag.ContinueOnError)
	fs.SetOutput(log)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	db := fs.String("db", "", "sqlite:<path> or postgres://... (default: an SQLite file in a temporary directory)")
	redisURL := fs.String("redis", "", "redis://host:port/db: herd on the two-level store over this Redis")
	natsURL := fs.String("nats", "", "nats://host:port: herd on the two-level store over this NATS JetStream")
	noCache := fs.Bool("no-cache", false, "query the database on every request")
	users := fs.Int("users", 10_000, "users to seed an empty database with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		dir, err := os.MkdirTemp("", "userservice-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*db = "sqlite:" + filepath.Join(dir, "users.db")
	}
	logger := slog.New(slog.NewTextHandler(log, nil))
	svc, err := userservice.Open(ctx, userservice.Config{
		Database: *db, Redis: *redisURL, NATS: *natsURL, NoCache: *noCache, Users: *users, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cerr := svc.Close(cctx); cerr != nil {
			logger.Error("close", "err", cerr)
		}
	}()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("serving", "url", "http://"+ln.Addr().String(), "db", redacted(*db), "cache", cacheName(*noCache, redacted(*redisURL), redacted(*natsURL)))
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// redacted is a URL without its password, for the log.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

func cacheName(noCache bool, redisURL, natsURL string) string {
	switch {
	case noCache:
		return "none"
	case redisURL != "":
		return "two-level over " + redisURL
	case natsURL != "":
		return "two-level over " + natsURL
	}
	return "memory"
}
