package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/herdcache/herd/cmd/herd/internal/proxy"
)

// runHealthy runs the command over the store at url at a load that a test
// machine sustains, and checks that it judged the run sound: the success
// summary and exit status 0. A machine too busy to send the requests on
// time (under -race, beside other tests) is the one other honest outcome:
// then the command must say so and withhold the summary, and exit with
// status 4, or 3 if the herd setups failed most requests too. Over a
// healthy store, on a machine that kept up, no herd setup may fail most of
// its requests.
func runHealthy(t *testing.T, url string) (stdout string) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run([]string{
		"--store", url, "--instances", "3", "--duration", "2s", "--clients", "2", "--keys", "50", "--store-outage", "0",
	}, &out, &errs)
	stdout = out.String()
	behind := strings.Contains(stdout, "\nLOAD NOT DELIVERED: ")
	switch {
	case behind && (code == exitBehind || code == exitHerdFailed) && !strings.Contains(stdout, "fewer source calls"):
		t.Logf("the machine was too busy to send the requests on time, and the command said so:\n%s", stdout)
	case code == exitOK && !behind && !strings.Contains(stdout, "FAILED"):
		if !strings.Contains(stdout, "\nload delivered: ") || !strings.Contains(stdout, "fewer source calls than no cache") {
			t.Fatalf("a sound run without its summary:\n%s", stdout)
		}
	default:
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, errs.String(), stdout)
	}
	return stdout
}

// runHung runs the command over the store at url, reached through p, which
// hangs from the first second of the run to its end, and checks that the
// herd setups get through it: exit status 0, no failure verdict, fewer
// source calls than no cache.
func runHung(t *testing.T, url string, p *proxy.Proxy) {
	t.Helper()
	var out bytes.Buffer
	// The progress lines on stderr tell the test where the run is.
	hang := func() { p.Cut(proxy.Hang) }
	restore := func() { _ = p.Restore() } // fails only once p is closed
	errs := &watcher{on: map[string]func(){"  1.0s/4s ": hang, "  4.0s/4s ": restore}}
	code := run([]string{
		"--store", url, "--instances", "2", "--duration", "4s", "--outage", "0s",
		"--clients", "4", "--keys", "50", "--timeout", "300ms", "--store-outage", "0",
	}, &out, errs)
	restore()
	stdout := out.String()
	flat := strings.ReplaceAll(stdout, "\n", " ") // the verdict wraps
	if code != 0 || strings.Contains(flat, "FAILED") || !strings.Contains(flat, "fewer source calls than no cache") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, errs.String())
	}
}

// outageRun is the JSON of a run with a store outage phase, as much of it
// as the tests read.
type outageRun struct {
	StoreOutage *struct {
		Fault        string  `json:"fault"`
		CutS         float64 `json:"cut_s"`
		RestoredS    float64 `json:"restored_s"`
		StoreSkipped uint64  `json:"store_skipped"`
		StoreDowns   uint64  `json:"store_downs"`
		StoreUps     uint64  `json:"store_ups"`
		Verdict      []string
		Windows      []struct {
			Name         string `json:"name"`
			Gets         uint64 `json:"gets"`
			Errors       uint64 `json:"errors"`
			FromStore    uint64 `json:"from_store"`
			Loaded       uint64 `json:"loaded"`
			Loads        uint64 `json:"loads"`
			StoreSkipped uint64 `json:"store_skipped"`
		} `json:"windows"`
	} `json:"store_outage"`
	StoreOutageNote string `json:"store_outage_note"`
}

// runOutagePhase runs the command over the store at url with a store
// outage phase of the given fault, and checks what the phase must show
// over any server: the caches read the store before the cut; during it
// they marked the store down, skipped it and answered every Get from the
// loader, none failing; after it they marked it up and read it again. It
// returns the table the same run printed, for the caller's checks.
func runOutagePhase(t *testing.T, url, fault, outage string) string {
	t.Helper()
	args := []string{
		"--store", url, "--duration", "1s", "--clients", "2", "--keys", "50", "--outage", "0s",
		"--store-outage", outage, "--store-fault", fault,
	}
	var out, errs bytes.Buffer
	code := run(append(args, "--json"), &out, &errs)
	if code != exitOK && code != exitBehind {
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, errs.String(), out.String())
	}
	var r outageRun
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, out.String())
	}
	o := r.StoreOutage
	if o == nil {
		t.Fatalf("no store_outage in:\n%s", out.String())
	}
	t.Logf("%+v", *o)
	if o.Fault != fault || o.StoreDowns == 0 || o.StoreUps == 0 || o.StoreSkipped == 0 {
		t.Errorf("fault %s, store down %d times, up %d times, %d calls skipped; want %s, and each at least once",
			o.Fault, o.StoreDowns, o.StoreUps, o.StoreSkipped, fault)
	}
	want := []string{"store up", "cut, until marked down", "cut, marked down", "store back"}
	if len(o.Windows) != len(want) {
		t.Fatalf("%d windows, want %d", len(o.Windows), len(want))
	}
	for i, w := range o.Windows {
		if w.Name != want[i] {
			t.Errorf("window %d is %q, want %q", i, w.Name, want[i])
		}
		// A store that fails costs a load, not an error.
		if w.Errors != 0 {
			t.Errorf("%s: %d of %d Gets failed", w.Name, w.Errors, w.Gets)
		}
	}
	up, down, back := o.Windows[0], o.Windows[2], o.Windows[3]
	if up.FromStore == 0 {
		t.Errorf("store up: no Get answered from the store: %+v", up)
	}
	// Marked down, the caches skip the store: a Get is a load, and only
	// a probe that found the store back answers from it, after the cut.
	if down.Gets == 0 || down.StoreSkipped == 0 || down.Loads == 0 || down.Loaded+down.FromStore != down.Gets {
		t.Errorf("cut, marked down: %+v; want Gets answered by loads, the store skipped", down)
	}
	if back.FromStore == 0 {
		t.Errorf("store back: no Get answered from the store again: %+v", back)
	}
	if len(o.Verdict) < 3 || !strings.Contains(o.Verdict[0], "first marked down") || !strings.Contains(o.Verdict[0], "up again") {
		t.Errorf("verdict: %q", o.Verdict)
	}
	// The table, from the same kind of run.
	out.Reset()
	errs.Reset()
	if code := run(args, &out, &errs); code != exitOK && code != exitBehind {
		t.Fatalf("exit %d, stderr:\n%s", code, errs.String())
	}
	if !strings.Contains(errs.String(), "store outage: the server ") {
		t.Errorf("no progress line for the phase on stderr:\n%s", errs.String())
	}
	return out.String()
}

// A watcher is the command's stderr: it keeps what is written and calls
// the function of each marker the first time the marker is written.
type watcher struct {
	mu   sync.Mutex
	b    strings.Builder
	on   map[string]func()
	done map[string]bool
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	var fire []func()
	for marker, f := range w.on {
		if !w.done[marker] && strings.Contains(w.b.String(), marker) {
			if w.done == nil {
				w.done = make(map[string]bool)
			}
			w.done[marker] = true
			fire = append(fire, f)
		}
	}
	w.mu.Unlock()
	for _, f := range fire {
		f()
	}
	return len(p), nil
}

func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// startProxy starts a proxy to target (host:port) that the test closes at
// its end.
func startProxy(t *testing.T, target string) *proxy.Proxy {
	t.Helper()
	p, err := proxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
