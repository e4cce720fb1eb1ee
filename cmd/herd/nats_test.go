package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS starts an embedded nats-server with JetStream on a free
// loopback port for the test and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: freeTCPPort(t), JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	return srv.ClientURL()
}

// The command runs its herd setups over a real NATS JetStream, three
// instances sharing it, at a load the test machine sustains, reports the
// run sound, and deletes the buckets it made.
func TestRunOverNATS(t *testing.T) {
	url := startNATS(t)
	stdout := runHealthy(t, url)
	if !strings.Contains(stdout, "share "+url) {
		t.Fatalf("the output does not say it ran on %s:\n%s", url, stdout)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range js.KeyValueStoreNames(context.Background()).Name() {
		t.Errorf("the run left bucket %q behind", name)
	}
}

// A NATS server that hangs once the run has started fails most requests of
// the herd setups: the command says so, prints no success summary, and
// exits with status 3.
func TestRunOverHungNATS(t *testing.T) {
	url := startNATS(t)
	p := newPausingProxy(t, strings.TrimPrefix(url, "nats://"))
	runHung(t, "nats://"+p.addr(), p)
}
