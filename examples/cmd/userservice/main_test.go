package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logWriter keeps what the command logs and hands on the URL it serves on.
type logWriter struct {
	mu  sync.Mutex
	b   strings.Builder
	url chan string
}

var servingURL = regexp.MustCompile(`msg=serving url=(\S+)`)

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if m := servingURL.FindStringSubmatch(string(p)); m != nil {
		w.url <- m[1]
	}
	return len(p), nil
}

// The command serves the service on the address it is given, and stops
// cleanly when its context ends.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := &logWriter{url: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--users", "50", "--db", "sqlite:" + filepath.Join(t.TempDir(), "u.db")}, log)
	}()
	var base string
	select {
	case base = <-log.url:
	case err := <-done:
		t.Fatalf("run returned %v before serving; log:\n%s", err, log.b.String())
	}
	for path, want := range map[string]string{"/healthz": "ok", "/users/7": `"name":"user 7"`, "/metrics": "herd_loads_total"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %q, want %q", path, resp.StatusCode, body, want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
