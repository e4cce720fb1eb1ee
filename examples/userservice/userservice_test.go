package userservice

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open opens a service for the test, seeded with 100 users, and serves it
// on a loopback port; both are closed when the test ends.
func open(t *testing.T, c Config) (*Service, string) {
	t.Helper()
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(t.TempDir(), "users.db")
	}
	c.Users = 100
	svc, err := Open(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return svc, srv.URL
}

// get GETs url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// profile GETs the profile of id and checks it against the seeded data.
func profile(t *testing.T, base string, id int64) Profile {
	t.Helper()
	code, body := get(t, base+"/users/"+strconv.FormatInt(id, 10))
	var p Profile
	if code != http.StatusOK {
		t.Fatalf("GET /users/%d: %d %s", id, code, body)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET /users/%d: %v in %q", id, err, body)
	}
	if p.ID != id || p.Email != "user"+strconv.FormatInt(id, 10)+"@example.com" || p.Orders != OrdersOf(id) || (p.Orders > 0) != (p.TotalCents > 0) {
		t.Fatalf("GET /users/%d: %+v", id, p)
	}
	return p
}

// The service in front of SQLite with herd in memory: the answers are the
// database's, unknown users are 404, a rename is read back at once, the
// metrics show herd's counters, and the database sees far fewer queries
// than the service gets requests.
func TestService(t *testing.T) {
	svc, base := open(t, Config{})
	requests := 0
	for range 10 {
		for id := int64(1); id <= 20; id++ {
			if p := profile(t, base, id); p.Name != "user "+strconv.FormatInt(id, 10) {
				t.Fatalf("%+v", p)
			}
			requests++
		}
	}
	for range 2 {
		if code, _ := get(t, base+"/users/100000"); code != http.StatusNotFound {
			t.Fatalf("GET an unknown user: %d, want 404", code)
		}
		requests++
	}
	if code, _ := get(t, base+"/users/x"); code != http.StatusBadRequest {
		t.Fatalf("GET /users/x: %d, want 400", code)
	}

	req, err := http.NewRequest(http.MethodPut, base+"/users/3", bytes.NewBufferString(`{"name": "Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /users/3: %d", resp.StatusCode)
	}
	if p := profile(t, base, 3); p.Name != "Ada" {
		t.Fatalf("after the rename: %+v", p)
	}
	requests += 2

	// 20 profiles loaded once, one unknown user asked of the database
	// once, the rename and the profile it dropped: 23 queries, and more
	// only if a background refresh came due, which takes 10 seconds.
	if q := svc.Queries(); q < 23 || q >= uint64(requests)/4 {
		t.Errorf("%d database queries for %d requests", q, requests)
	}
	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	// 200 reads of 20 profiles: 20 misses, 180 hits; the unknown user a
	// miss, then a negative hit; the renamed profile a miss.
	for name, want := range map[string]float64{
		`herd_hits_total{cache="users"}`:          180,
		`herd_misses_total{cache="users"}`:        22,
		`herd_loads_total{cache="users"}`:         22,
		`herd_negative_hits_total{cache="users"}`: 1,
		"userservice_db_queries_total":            float64(svc.Queries()),
	} {
		if got, ok := metric(metrics, name); !ok || got != want {
			t.Errorf("/metrics: %s is %v (found: %v), want %v", name, got, ok, want)
		}
	}
}

// metric returns the value of the sample name (with its labels) in a
// Prometheus text exposition.
func metric(exposition, name string) (float64, bool) {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// Without herd, every request is a query.
func TestServiceWithoutCache(t *testing.T) {
	svc, base := open(t, Config{NoCache: true})
	for range 3 {
		for id := int64(1); id <= 10; id++ {
			profile(t, base, id)
		}
	}
	if q := svc.Queries(); q != 30 {
		t.Errorf("%d database queries for 30 requests", q)
	}
	_, metrics := get(t, base+"/metrics")
	if q, ok := metric(metrics, "userservice_db_queries_total"); strings.Contains(metrics, "herd_") || !ok || q != 30 {
		t.Errorf("/metrics:\n%s", metrics)
	}
}

// Two instances over one database and one shared store: a profile that the
// first loaded is read by the second from the shared store, without a
// query.
func testShared(t *testing.T, c Config) {
	c.Database = "sqlite:" + filepath.Join(t.TempDir(), "users.db")
	a, baseA := open(t, c)
	b, baseB := open(t, c)
	for id := int64(1); id <= 10; id++ {
		profile(t, baseA, id)
	}
	if q := a.Queries(); q != 10 {
		t.Fatalf("instance A: %d queries for 10 new profiles", q)
	}
	for range 3 {
		for id := int64(1); id <= 10; id++ {
			profile(t, baseB, id)
		}
	}
	if q := b.Queries(); q != 0 {
		t.Fatalf("instance B: %d queries for profiles in the shared store", q)
	}
}

func TestServiceOverRedis(t *testing.T) {
	testShared(t, Config{Redis: startRedis(t)})
}

func TestServiceOverNATS(t *testing.T) {
	testShared(t, Config{NATS: startNATS(t)})
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Database: "mysql://db"}, `userservice: database "mysql://db": want sqlite:<path> or a postgres:// URL`},
		{Config{Database: "sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", "users.db")}, "userservice: database: "},
		{Config{Database: "sqlite::memory:", Redis: "redis://a", NATS: "nats://b"}, "a Redis URL or a NATS URL, not both"},
		{Config{Database: "sqlite:" + filepath.Join(t.TempDir(), "u.db"), Users: 10, Redis: "redis://127.0.0.1:" + strconv.Itoa(freePort(t))}, "userservice: redis: "},
	} {
		svc, err := Open(t.Context(), tc.c)
		if err == nil {
			_ = svc.Close(t.Context())
			t.Errorf("%+v: no error", tc.c)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}
