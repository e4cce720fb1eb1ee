// Package report renders the results of a scenario of the herd command: a
// text table for people, JSON for programs, a self-contained HTML page with
// charts, and the progress of a running scenario.
package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// storeName is the store the herd setups of r ran on, as --store named it.
func storeName(c *sim.Config) string {
	if c.StoreName == "" {
		return "memory"
	}
	return c.StoreName
}

// storeDesc says where the herd setups kept their entries.
func storeDesc(c *sim.Config) string {
	if n := storeName(c); n != "memory" {
		return n
	}
	return "the memory store"
}

// count formats n with thousands separators: 128,000.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// short formats n in at most five characters: 980, 12.3k, 128k, 1.2M.
func short(n uint64) string {
	switch {
	case n < 1000:
		return strconv.FormatUint(n, 10)
	case n < 100_000:
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	case n < 1_000_000:
		return strconv.FormatUint(n/1000, 10) + "k"
	default:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	}
}

// decade formats a power of ten: 1, 10, 100, 1k, 10k, 100k, 1M.
func decade(n uint64) string {
	switch {
	case n >= 1_000_000:
		return strconv.FormatUint(n/1_000_000, 10) + "M"
	case n >= 1000:
		return strconv.FormatUint(n/1000, 10) + "k"
	}
	return strconv.FormatUint(n, 10)
}

// latency formats a client latency with two or three significant digits.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < 10*time.Microsecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) + "µs"
	case d < time.Millisecond:
		return strconv.FormatInt(int64(d/time.Microsecond), 10) + "µs"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
	case d < time.Second:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
}

// span formats a setting such as a TTL or an outage: 5s, 1.5s, 500ms, 1h.
func span(d time.Duration) string {
	s := d.String()
	for _, unit := range []string{"h0m0s", "m0s"} {
		if strings.HasSuffix(s, unit) {
			return s[:len(s)-len(unit)+1]
		}
	}
	return s
}

// percent formats a ratio in [0, 1] as a percentage with one decimal.
func percent(r float64) string {
	return strconv.FormatFloat(100*r, 'f', 1, 64) + "%"
}

// rate formats a ratio in [0, 1] as a percentage with up to three
// significant digits: 1%, 0.5%, 12.5%.
func rate(r float64) string {
	return strconv.FormatFloat(100*r, 'g', 3, 64) + "%"
}

// requests is the number of requests of the setups of r: the same for each,
// unless the run was interrupted.
func requests(r *sim.Report) uint64 {
	var n uint64
	for _, s := range r.Setups {
		n = max(n, s.Requests)
	}
	return n
}

// describe returns the lines that say what scenario r ran.
func describe(r *sim.Report) []string {
	c := &r.Config
	outage := "no outage"
	if c.Outage > 0 {
		outage = fmt.Sprintf("down from %v to %v (calls hang %v, then fail)", span(r.OutageFrom), span(r.OutageTo), span(c.OutageHang))
	}
	caches := fmt.Sprintf("caches: TTL %v; herd on %s", span(c.TTL), storeDesc(c))
	if c.Instances > 1 {
		caches = fmt.Sprintf("caches: TTL %v; %d instances of each: herd's share %s and a lock", span(c.TTL), c.Instances, storeDesc(c))
		for _, s := range r.Setups {
			if s.Kind == sim.PlainTTL {
				caches += ", the plain maps share nothing"
			}
		}
	}
	swr := c.SWR()
	return append([]string{
		fmt.Sprintf("%d clients × %s req/s for %v (%s requests per setup), %s keys (Zipf %v), client timeout %v",
			c.Clients, strconv.FormatFloat(float64(time.Second)/float64(c.Interval), 'f', -1, 64),
			span(c.Duration), count(requests(r)), count(uint64(c.Keys)), c.Zipf, span(c.Timeout)),
		fmt.Sprintf("source: %v median latency, %s errors, %s", span(c.Latency), rate(c.ErrorRate), outage),
		caches,
		fmt.Sprintf("herd (SWR+SIE): refresh after %v, TTL %v, stale-if-error %v, load timeout %v",
			span(swr.RefreshAfter), span(swr.TTL), span(swr.StaleIfError), span(swr.LoadTimeout)),
	}, c.Notes...)
}
