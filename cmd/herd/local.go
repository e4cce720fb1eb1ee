package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The --store values that make the command start a server of its own for
// the run, in a temporary directory that it removes at the end.
const (
	// storeNATSEmbedded runs an embedded nats-server with JetStream in the
	// command's process: nothing to install.
	storeNATSEmbedded = "nats:embedded"
	// storeRedisLocal runs the redis-server found on PATH on a free
	// loopback port.
	storeRedisLocal = "redis:local"
)

// minNATS is the oldest nats-server that natsstore works with: 2.11 brought
// the per-message TTLs that expire its entries and its locks.
var minNATS = [2]int{2, 11}

// installRedis says how to get redis-server, in one line.
const installRedis = "apt-get install redis-server (Debian, Ubuntu) or brew install redis (macOS)"

// startTimeout bounds the start of a server the command runs itself.
const startTimeout = 10 * time.Second

// A localServer is a server that the command started for the run.
type localServer struct {
	url  string // where to reach it
	name string // how reports name it
	stop func() // stops it and removes its directory; waits for both
}

// startStore starts the server that a --store of nats:embedded or
// redis:local asks for. For any other --store it returns the value as the
// URL, named without its password, and a stop that does nothing.
func startStore(store string) (*localServer, error) {
	switch store {
	case storeNATSEmbedded:
		return startEmbeddedNATS()
	case storeRedisLocal:
		return startLocalRedis()
	}
	return &localServer{url: store, name: redact(store), stop: func() {}}, nil
}

// startEmbeddedNATS starts a nats-server with JetStream in this process, on
// a free loopback port, storing in a temporary directory.
func startEmbeddedNATS() (*localServer, error) {
	dir, err := os.MkdirTemp("", "herd-nats-")
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", storeNATSEmbedded, err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--store %s: %w", storeNATSEmbedded, err)
	}
	srv.Start()
	stop := func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
	if !srv.ReadyForConnections(startTimeout) {
		stop()
		return nil, fmt.Errorf("--store %s: the embedded nats-server did not start within %v", storeNATSEmbedded, startTimeout)
	}
	return &localServer{
		url:  srv.ClientURL(),
		name: fmt.Sprintf("%s (nats-server %s in this process, %s)", storeNATSEmbedded, server.VERSION, srv.ClientURL()),
		stop: stop,
	}, nil
}

// startLocalRedis starts the redis-server found on PATH on a free loopback
// port, with no persistence, in a temporary directory.
func startLocalRedis() (*localServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("--store %s: redis-server is not on PATH; install it with %s, or use --store %s, which needs nothing",
			storeRedisLocal, installRedis, storeNATSEmbedded)
	}
	dir, err := os.MkdirTemp("", "herd-redis-")
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", storeRedisLocal, err)
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--store %s: %w", storeRedisLocal, err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--store %s: %w", storeRedisLocal, err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("--store %s: %s: %w", storeRedisLocal, bin, err)
	}
	log := &serverLog{ready: make(chan struct{}), ended: make(chan struct{})}
	var reading sync.WaitGroup
	reading.Go(func() { log.follow(out, "Ready to accept connections") })
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			reading.Wait() // the pipe closes when the process exits
			_ = cmd.Wait()
			_ = os.RemoveAll(dir)
		})
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-log.ready:
	case <-log.ended:
		stop()
		return nil, fmt.Errorf("--store %s: %s exited: %s", storeRedisLocal, bin, log.last())
	case <-timer.C:
		stop()
		return nil, fmt.Errorf("--store %s: %s did not start within %v: %s", storeRedisLocal, bin, startTimeout, log.last())
	}
	url := "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	return &localServer{
		url:  url,
		name: fmt.Sprintf("%s (%s on %s)", storeRedisLocal, bin, url),
		stop: stop,
	}, nil
}

// A serverLog follows the output of a server the command started: it
// closes ready when a line holds the marker, and keeps the last line for
// errors.
type serverLog struct {
	ready chan struct{}
	ended chan struct{}

	mu   sync.Mutex
	line string
}

func (l *serverLog) follow(r io.Reader, marker string) {
	sc := bufio.NewScanner(r)
	signalled := false
	for sc.Scan() {
		text := sc.Text()
		l.mu.Lock()
		l.line = strings.TrimSpace(text)
		l.mu.Unlock()
		if !signalled && strings.Contains(text, marker) {
			close(l.ready)
			signalled = true
		}
	}
	if !signalled {
		close(l.ended)
	}
}

func (l *serverLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line == "" {
		return "no output"
	}
	return l.line
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkNATSVersion returns an error when version, a nats-server's, is
// older than natsstore needs.
func checkNATSVersion(version string) error {
	major, minor, ok := parseVersion(version)
	if !ok {
		return fmt.Errorf("nats-server version %q: %w", version, errBadVersion)
	}
	if major < minNATS[0] || major == minNATS[0] && minor < minNATS[1] {
		return fmt.Errorf("nats-server %s is too old: natsstore needs %d.%d or newer (per-message TTLs); --store %s runs one in the command",
			version, minNATS[0], minNATS[1], storeNATSEmbedded)
	}
	return nil
}

var errBadVersion = errors.New("not major.minor.patch")

// parseVersion reads the major and minor numbers of "2.11.3" or "v2.11.3".
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}
