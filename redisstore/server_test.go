package redisstore_test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A redisServer is a redis-server process of one test, on a loopback port,
// without persistence, in a temporary directory. It is stopped at the end of
// the test.
type redisServer struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	args   []string // more arguments of redis-server
	conf   string   // a sentinel's configuration file; empty for a server
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts a redis-server for t. The test fails if redis-server is
// not installed: these tests run against a real server, never a fake.
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (%v): the redisstore tests need a real server; "+
			"install it with `apt-get install redis-server` or `make test-deps`", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: port, args: args}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// startSentinel starts a Sentinel for t that monitors master under the
// name "m".
func startSentinel(t testing.TB, master *redisServer) *redisServer {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte("sentinel monitor m 127.0.0.1 "+strconv.Itoa(master.port)+" 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: port, conf: conf}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start starts the server on its port and waits until it answers PING.
func (s *redisServer) start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redis-server already running")
	}
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...)
	if s.conf != "" {
		args = append([]string{s.conf, "--sentinel"}, args...)
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)

	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.ping() {
			return
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.cmd = nil
			s.t.Fatalf("redis-server exited at start:\n%s", log)
		case <-deadline:
			s.stop()
			s.t.Fatalf("redis-server on %s did not answer PING within 10s", s.addr())
		case <-tick.C:
		}
	}
}

// ping reports whether the server answers PING.
func (s *redisServer) ping() bool {
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// stop kills the server and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// restart starts the server again on the same port, empty.
func (s *redisServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// client returns a new client of the server, closed at the end of the test.
// Its calls honour their contexts.
func (s *redisServer) client(t testing.TB, adjust ...func(*redis.Options)) *redis.Client {
	t.Helper()
	return newClient(t, s.addr(), adjust...)
}

func newClient(t testing.TB, addr string, adjust ...func(*redis.Options)) *redis.Client {
	t.Helper()
	opts := &redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		DialerRetries:         1,
	}
	for _, f := range adjust {
		f(opts)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return c
}

// prefixOf turns a test name into a store prefix: no ':'.
func prefixOf(t *testing.T) string {
	return strings.NewReplacer(":", "_", " ", "_").Replace(t.Name())
}
