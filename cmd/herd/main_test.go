package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// closedPort is a loopback port that nothing listens on.
var closedPort = func() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	return port
}()

// A bad flag, store or URL is one line on stderr and exit status 2, before
// anything runs.
func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "flag provided but not defined: -nope (see herd -h)"},
		{[]string{"--clients", "many"}, `invalid value "many" for flag -clients`},
		{[]string{"--duration", "20"}, `invalid value "20" for flag -duration`},
		{[]string{"--duration", "0s"}, "--duration must be positive, got 0s"},
		{[]string{"--latency", "-5ms"}, "--latency must be positive, got -5ms"},
		{[]string{"--outage", "30s"}, "--outage must be at least 0 and shorter than the duration (20s), got 30s"},
		{[]string{"--errors", "1.5"}, "--errors must be at least 0 and below 1, got 1.5"},
		{[]string{"--keys", "0"}, "--keys must be between 1 and"},
		{[]string{"--clients", "0"}, "--clients must be between 1 and"},
		{[]string{"--instances", "0"}, "--instances must be between 1 and"},
		{[]string{"--ttl", "0s"}, "--ttl must be positive"},
		{[]string{"run"}, `unexpected argument "run" (see herd -h)`},
		{[]string{"--store-outage", "2s"}, "--store-outage and --store-fault need a --store server: the memory store is in this process"},
		{[]string{"--store-fault", "refuse"}, "--store-outage and --store-fault need a --store server"},
		{[]string{"--store", "redis://127.0.0.1:" + closedPort + "/0", "--store-outage", "-1s"}, "--store-outage must be at least 0, got -1s"},
		{[]string{"--store", "redis://127.0.0.1:" + closedPort + "/0", "--store-fault", "kill"}, `--store-fault: unknown fault "kill": want hang or refuse`},
		{[]string{"--store", "redis://127.0.0.1:" + closedPort + "/0", "--store-outage", "0s", "--store-fault", "hang"}, "--store-fault needs a store outage"},
		{[]string{"--soak", "--store", "redis://127.0.0.1:" + closedPort + "/0", "--store-outage", "1s"}, "do not apply to --soak or --batch"},
		{[]string{"--store", "redis://127.0.0.1:" + closedPort + "/0"}, "store redis://127.0.0.1:" + closedPort + "/0 is unreachable"},
		{[]string{"--store", "redis://user:secret@127.0.0.1:" + closedPort + "/0"}, "store redis://xxxxx@127.0.0.1:" + closedPort + "/0 is unreachable"},
		{[]string{"--store", "nats://127.0.0.1:" + closedPort}, "store nats://127.0.0.1:" + closedPort + " is unreachable"},
		{[]string{"--store", "redis://"}, `--store: invalid URL "redis://": no host`},
		{[]string{"--store", "redis://127.0.0.1:port"}, `--store: invalid URL "redis://127.0.0.1:port": invalid port ":port" after host`},
		{[]string{"--store", "redis://u:secret@cache:port"}, `--store: invalid URL "redis://xxxxx@cache:port": invalid port`},
		{[]string{"--store", "::6379"}, `--store: invalid URL "::6379": missing protocol scheme`},
		{[]string{"--store", "memcached://127.0.0.1"}, `--store: unknown scheme "memcached"`},
		{[]string{"--store", "redis"}, `--store: unknown store "redis"`},
		{[]string{"--store", "nats:embeded"}, `--store: unknown store "nats:embeded": want memory, nats:embedded, redis:local,`},
		{[]string{"--store", "admin:secret@cache"}, `--store: unknown scheme "admin" in "xxxxx@cache"`},
		{[]string{"--html", filepath.Join(t.TempDir(), "no", "such", "dir", "report.html")}, "--html: open "},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", tc.args, code, stdout.String())
		}
		if !strings.HasPrefix(msg, "herd: ") || !strings.Contains(msg, tc.want) ||
			strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
			t.Errorf("%q: stderr %q, want one line containing %q", tc.args, msg, tc.want)
		}
		if strings.Contains(msg, "secret") || strings.Contains(msg, "goroutine") {
			t.Errorf("%q: stderr %q", tc.args, msg)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("%s: exit %d, stderr %q", arg, code, stderr.String())
		}
		for _, flag := range []string{"--duration", "--clients", "--keys", "--latency", "--outage", "--json", "--html", "--store", "--instances"} {
			if !strings.Contains(stdout.String(), "  "+flag+" ") {
				t.Errorf("%s: the usage does not mention %s", arg, flag)
			}
		}
	}
}

// The usage and the package documentation (go doc) describe the same
// flags in the same words, defaults and --store choices included.
func TestUsageMatchesDoc(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, l := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(l, "//\t"); ok {
			doc = append(doc, "  "+rest)
		} else {
			doc = append(doc, "")
		}
	}
	fromUsage, fromDoc := flagDocs(strings.Split(usage, "\n")), flagDocs(doc)
	if len(fromUsage) < 13 {
		t.Fatalf("the usage documents %d flags: %q", len(fromUsage), fromUsage)
	}
	for name, want := range fromUsage {
		if got := fromDoc[name]; got != want {
			t.Errorf("--%s: doc.go says\n\t%q\nthe usage says\n\t%q", name, got, want)
		}
	}
	for name := range fromDoc {
		if _, ok := fromUsage[name]; !ok {
			t.Errorf("doc.go documents --%s, the usage does not", name)
		}
	}
	if !strings.Contains(fromDoc["store"], "memory; nats:embedded, a nats-server run in the command; redis:local,") {
		t.Errorf("doc.go does not list the stores: %q", fromDoc["store"])
	}
}

// flagDocs returns the description of each flag in lines laid out as the
// usage is: "  --name arg  words", continued on lines indented further.
func flagDocs(lines []string) map[string]string {
	docs := map[string]string{}
	name := ""
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "  --"):
			name = strings.TrimPrefix(f[0], "--")
			docs[name] = strings.Join(f[1:], " ")
		case name != "" && len(f) > 0 && strings.HasPrefix(l, "          "):
			docs[name] += " " + strings.Join(f, " ")
		default:
			name = ""
		}
	}
	return docs
}

// runInBubble runs the command in a synctest bubble, where its 20 seconds
// of scenario take no real time.
func runInBubble(t *testing.T, ctx func(context.Context) (context.Context, context.CancelFunc), args ...string) (code int, stdout, stderr string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		c, cancel := ctx(t.Context())
		defer cancel()
		var out, errs bytes.Buffer
		code = runContext(c, args, &out, &errs)
		stdout, stderr = out.String(), errs.String()
	})
	return code, stdout, stderr
}

func background(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// small is a quick scenario: 4 seconds of fake time, a 1-second outage.
var small = []string{"--duration", "4s", "--clients", "4", "--keys", "20", "--outage", "1s"}

func TestRunPrintsATable(t *testing.T) {
	code, stdout, stderr := runInBubble(t, background, small...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"4 clients × 100 req/s for 4s (1,600 requests per setup), 20 keys", "setup ", "\nno cache ", "\nplain TTL map ",
		"\nherd (TTL) ", "\nherd (SWR+SIE) ", "\nload delivered: 100.0% of requests sent within 100ms",
		"fewer source calls than no cache",
		"\nstore outage phase: not run: the memory store is in this process, with no server to cut.",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in\n%s", want, stdout)
		}
	}
	// Not a terminal: plain progress lines, no bar.
	if !strings.Contains(stderr, "  1.0s/4s  source calls: none ") || !strings.Contains(stderr, "the source is down") ||
		!strings.Contains(stderr, "ran in ") || strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("progress:\n%s", stderr)
	}
}

// Without --outage, the outage is a quarter of the run, wherever the
// duration puts it: a short run needs no other flag.
func TestDefaultOutageScalesWithTheDuration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 5 * time.Second},
		{[]string{"--duration", "5s"}, 1250 * time.Millisecond},
		{[]string{"--duration", "2m"}, 30 * time.Second},
		{[]string{"--duration", "5s", "--outage", "2s"}, 2 * time.Second},
		{[]string{"--duration", "5s", "--outage", "0s"}, 0},
	} {
		o, err := parseFlags(tc.args)
		if err != nil || o.cfg.Outage != tc.want {
			t.Errorf("%q: outage %v, %v; want %v", tc.args, o.cfg.Outage, err, tc.want)
		}
	}
	code, stdout, stderr := runInBubble(t, background, "--duration", "5s", "--clients", "4", "--keys", "20")
	if code != exitOK || !strings.Contains(stdout, "down from 1.875s to 3.125s") {
		t.Fatalf("exit %d, stderr %q, stdout\n%s", code, stderr, stdout)
	}
}

// Over a remote store, where each herd request is a round trip, the
// default load is scaled down, and the output says so; --clients wins.
func TestRemoteStoreScalesTheLoad(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		clients int
		note    bool
	}{
		{nil, 64, false},
		{[]string{"--store", "redis://127.0.0.1:6379/0"}, remoteClients, true},
		{[]string{"--store", "nats://127.0.0.1:4222"}, remoteClients, true},
		{[]string{"--store", "nats:embedded"}, remoteClients, true},
		{[]string{"--store", "nats://127.0.0.1:4222", "--clients", "64"}, 64, false},
	} {
		o, err := parseFlags(tc.args)
		if err != nil || o.cfg.Clients != tc.clients || (len(o.cfg.Notes) == 1) != tc.note {
			t.Errorf("%q: %d clients, notes %q, %v; want %d clients, a note: %v", tc.args, o.cfg.Clients, o.cfg.Notes, err, tc.clients, tc.note)
		}
		if tc.note && !strings.Contains(o.cfg.Notes[0], "load scaled down for a remote store: 16 clients instead of 64") {
			t.Errorf("%q: note %q", tc.args, o.cfg.Notes[0])
		}
	}
}

// A run where the herd setups fail most requests (a source slower than
// every client's deadline) prints no success summary and exits with
// status 3.
func TestRunReportsFailure(t *testing.T) {
	code, stdout, stderr := runInBubble(t, background, append(small, "--latency", "10s", "--timeout", "100ms")...)
	if code != exitHerdFailed || !strings.Contains(stdout, "\nFAILED: herd (TTL) failed 100.0% of its requests") ||
		strings.Contains(stdout, "fewer source calls") {
		t.Fatalf("exit %d, stdout\n%s", code, stdout)
	}
	if !strings.HasSuffix(stderr, "herd: the run failed: herd (TTL) failed most of its requests\n") {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestRunJSON(t *testing.T) {
	code, stdout, stderr := runInBubble(t, background, append(small, "--json", "--instances", "2")...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got struct {
		Config struct{ Instances int }
		Setups []struct {
			ID          string
			Requests    uint64
			SourceCalls uint64 `json:"source_calls"`
		}
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	if got.Config.Instances != 2 || len(got.Setups) != 4 || got.Setups[0].ID != "none" || got.Setups[0].Requests != 1600 {
		t.Fatalf("%+v", got)
	}
}

func TestRunWritesHTML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.html")
	code, stdout, stderr := runInBubble(t, background, append(small, "--html", path)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "<svg ") || !strings.Contains(stdout, "wrote "+path) ||
		!strings.Contains(string(page), "<code>herd --duration 4s --clients 4 --keys 20 --outage 1s --html "+path+"</code>") {
		t.Fatalf("stdout %q, page of %d bytes", stdout, len(page))
	}
}

// An interrupted run exits with status 130 and leaves no half-written report.
func TestRunInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.html")
	interruptAfter2s := func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, 2*time.Second)
	}
	code, stdout, stderr := runInBubble(t, interruptAfter2s, append(small, "--html", path)...)
	if code != 130 || stdout != "" || !strings.HasSuffix(stderr, "herd: interrupted\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the report of an interrupted run is left behind: %v", err)
	}
}

// A real run, outside a bubble, for the signal handling and the clock: short.
func TestRunForReal(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"--duration", "300ms", "--clients", "2", "--keys", "10", "--outage", "0s", "--latency", "5ms", "--timeout", "100ms"}
	// A machine too busy to send the requests on time (under -race, beside
	// other tests) makes it exit with status 4, and say so.
	code := run(args, &stdout, &stderr)
	if code != exitOK && (code != exitBehind || !strings.Contains(stdout.String(), "\nLOAD NOT DELIVERED: ")) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "herd (SWR+SIE)") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

func TestTerminalAndCI(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	for v, want := range map[string]bool{"": false, "true": true, "1": true, "false": false, "0": false} {
		t.Setenv("CI", v)
		if underCI() != want {
			t.Errorf("CI=%q: underCI() = %v", v, !want)
		}
	}
}

// Reports show the command line that made them, quoted as a shell takes
// it, without a store's password.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "herd"},
		{[]string{"--duration", "10s", "--html", "my report.html"}, "herd --duration 10s --html 'my report.html'"},
		{[]string{"--store", "redis://user:secret@cache:6379/0"}, "herd --store redis://xxxxx@cache:6379/0"},
		{[]string{"--store=nats://u:p@host:4222"}, "herd --store=nats://xxxxx@host:4222"},
		{[]string{"--html", "it's.html"}, `herd --html 'it'\''s.html'`},
	} {
		if got := commandLine(tc.args); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, got, tc.want)
		}
	}
}
