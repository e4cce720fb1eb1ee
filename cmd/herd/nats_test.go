package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The command runs its herd setups over a real NATS JetStream (an embedded
// server on a free loopback port), three instances sharing it, and deletes
// the buckets it made.
func TestRunOverNATS(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: freeTCPPort(t), JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	url := srv.ClientURL()

	var stdout, stderr bytes.Buffer
	code := run([]string{
		"--store", url, "--instances", "3", "--duration", "2s", "--outage", "500ms",
		"--clients", "8", "--keys", "100",
	}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "share "+url) {
		t.Fatalf("output does not say it ran on %s:\n%s", url, stdout.String())
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
