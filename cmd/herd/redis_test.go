package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis starts a redis-server on a free loopback port for the test and
// returns its URL. The test fails, not skips, when redis-server is missing:
// make test installs it.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
	}
	port := strconv.Itoa(freeTCPPort(t))
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				signalled = true
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("redis-server did not start within 10s")
	}
	return "redis://127.0.0.1:" + port + "/0"
}

// freeTCPPort returns a loopback port that was free a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The command runs its herd setups over a real Redis, three instances
// sharing it, at a load the test machine sustains, reports the run sound,
// and removes what it wrote.
func TestRunOverRedis(t *testing.T) {
	url := startRedis(t)
	stdout := runHealthy(t, url)
	if !strings.Contains(stdout, "share redis://127.0.0.1") {
		t.Fatalf("the output does not say it ran on Redis:\n%s", stdout)
	}
	assertNoRedisKeys(t, url)
}

// A Redis that hangs once the run has started (it takes connections and
// answers nothing, as a stopped process does) costs the herd setups the
// requests that wait out their deadline until their caches mark it down
// (three store calls in a row that ran out of their callers' deadlines);
// then they answer by loads, and the run succeeds.
func TestRunOverHungRedis(t *testing.T) {
	url := startRedis(t)
	p := startProxy(t, strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0"))
	runHung(t, "redis://"+p.Addr()+"/0", p)
}

// --store redis:local runs the demo over the redis-server found on PATH,
// which the command starts on a free port in a temporary directory, and
// stops and removes at the end.
func TestRunOverLocalRedis(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	stdout := runHealthy(t, storeRedisLocal)
	if !strings.Contains(stdout, "share redis:local (") {
		t.Fatalf("the output does not say it ran on a local redis-server:\n%s", stdout)
	}
	assertEmpty(t, tmp)
}

// Without redis-server on PATH, --store redis:local is one line that says
// how to install it, and exit status 2.
func TestLocalRedisMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	code := run([]string{"--store", storeRedisLocal}, &stdout, &stderr)
	want := "herd: --store redis:local: redis-server is not on PATH; install it with apt-get install redis-server (Debian, Ubuntu) or brew install redis (macOS)"
	if code != exitUsage || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// After a run over Redis, the store outage phase: the caches, on go-redis
// clients at their defaults, through a proxy that hangs for 4 seconds. A
// go-redis client at its defaults waits for an answer on an open
// connection for its read timeout (3s), whatever the call's context says,
// and a hang shorter than that ends with every call answered, late, and
// the store never marked down: the phase must outlast it.
func TestStoreOutageOverRedis(t *testing.T) {
	url := startRedis(t)
	table := runOutagePhase(t, url, "hang", "4s")
	for _, want := range []string{
		"\nstore outage: 2 clients × 100 Gets/s through 1 herd cache with a lock", "client: go-redis v9 at its defaults",
		"the server hangs: ", "\ncut, until marked down ", "\ncut, marked down ", "\nstore back ", "store calls skipped",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("no %q in the table:\n%s", want, table)
		}
	}
	assertNoRedisKeys(t, url)
}

// assertNoRedisKeys fails the test if a run left keys in the Redis at url.
func assertNoRedisKeys(t *testing.T, url string) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	keys, err := client.Keys(context.Background(), "herd-demo-*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("the run left %d keys behind, e.g. %q", len(keys), keys[0])
	}
}
