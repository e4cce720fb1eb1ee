package main

import (
	"context"
	"os"
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

// A NATS server that hangs once the run has started costs the herd setups
// the requests that wait out their deadline until their caches mark it
// down (three store calls in a row that ran out of their callers'
// deadlines); then they answer by loads, and the run succeeds.
func TestRunOverHungNATS(t *testing.T) {
	url := startNATS(t)
	p := startProxy(t, strings.TrimPrefix(url, "nats://"))
	runHung(t, "nats://"+p.Addr(), p)
}

// --store nats:embedded runs the demo over a nats-server that the command
// starts in its own process, in a temporary directory that it removes at
// the end: nothing to install.
func TestRunOverEmbeddedNATS(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	stdout := runHealthy(t, storeNATSEmbedded)
	if !strings.Contains(stdout, "share nats:embedded (nats-server 2.") {
		t.Fatalf("the output does not say it ran on an embedded nats-server:\n%s", stdout)
	}
	assertEmpty(t, tmp)
}

// natsstore needs nats-server 2.11 or newer; an older server is a clear
// error that names the way out.
func TestCheckNATSVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"2.11.0": true, "2.12.15": true, "v2.11.3": true, "3.0.0": true,
		"2.10.22": false, "2.9.25": false, "1.4.1": false, "": false, "two": false,
	} {
		err := checkNATSVersion(v)
		if (err == nil) != ok {
			t.Errorf("%q: %v", v, err)
		}
		if err != nil && v == "2.9.25" && !strings.Contains(err.Error(), "natsstore needs 2.11 or newer") {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// assertEmpty fails the test if dir holds anything.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("the run left %s behind in the temporary directory", e.Name())
	}
}

// After a run over an embedded NATS server, the store outage phase: the
// caches, on nats.go connections at their defaults, through a proxy that
// refuses connections for a second; the run removes its directory.
func TestStoreOutageOverEmbeddedNATS(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	table := runOutagePhase(t, storeNATSEmbedded, "refuse", "1s")
	for _, want := range []string{"client: nats.go at its defaults", "the server refuses connections: "} {
		if !strings.Contains(table, want) {
			t.Errorf("no %q in the table:\n%s", want, table)
		}
	}
	assertEmpty(t, tmp)
}
