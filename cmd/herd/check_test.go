package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The history check over an embedded NATS server, with short phases: it
// runs its three faults, prints a line for each and the history's
// figures, and finds no violation.
func TestCheckOverNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	status := runContext(ctx, []string{"--check", "--store", "nats:embedded", "--check-calls", "300"}, &stdout, &stderr)
	out := stdout.String()
	if status != exitOK {
		t.Fatalf("status %d, want %d; stdout:\n%s\nstderr:\n%s", status, exitOK, out, stderr.String())
	}
	for _, want := range []string{
		"fault: instance 1: instance 1 stalled",
		"fault: instance 2: instance 2 partitioned",
		"fault: every instance: every instance cut",
		"history: ",
		"violations: bounded staleness 0, read-your-writes 0, monotonic reads 0",
		"\nverdict: ok: no violation in ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
}

// The history check needs a server whose connections it can cut: on the
// memory store, and with the flags of other scenarios, it is a flag
// error.
func TestCheckFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--check"}, "--check needs a store server"},
		{[]string{"--check", "--store", "nats:embedded", "--fleet"}, "not with --fleet"},
		{[]string{"--check", "--store", "nats:embedded", "--check-calls", "0"}, "--check-calls must be positive"},
		{[]string{"--check-calls", "10", "--store", "nats:embedded"}, "--check-calls needs --check"},
	} {
		var stdout, stderr bytes.Buffer
		if status := runContext(context.Background(), tc.args, &stdout, &stderr); status != exitUsage {
			t.Errorf("%q: status %d, want %d", tc.args, status, exitUsage)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q, want it to say %q", tc.args, stderr.String(), tc.want)
		}
	}
}
