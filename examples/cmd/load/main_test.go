package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A short load run: both rounds answer every request, and with herd the
// database sees fewer queries a second than without.
func TestLoad(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--rate", "100", "--duration", "1s", "--warmup", "500ms", "--users", "200"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	t.Log("\n" + out)
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 8 && f[1] == "herd" {
			rows[f[0]+" herd"] = f[2:]
		}
	}
	without, with := rows["without herd"], rows["with herd"]
	if without == nil || with == nil {
		t.Fatalf("no row for each round in:\n%s", out)
	}
	qps := func(row []string) float64 {
		v, err := strconv.ParseFloat(strings.ReplaceAll(row[1], ",", ""), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if qps(without) < 80 || qps(with) >= qps(without) {
		t.Errorf("database queries a second: %v without herd, %v with it", qps(without), qps(with))
	}
	if without[5] != "0" || with[5] != "0" {
		t.Errorf("errors: %s without herd, %s with it", without[5], with[5])
	}
	if !strings.Contains(out, "fewer database queries; p99 ") {
		t.Errorf("no summary in:\n%s", out)
	}
}

func TestLoadBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--rate", "0"}, {"--zipf", "1"}, {"--duration", "0s"}, {"--nope"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
