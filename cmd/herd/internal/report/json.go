package report

import (
	"encoding/json"
	"io"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// The JSON document. Times and settings are in seconds (_s), client
// latencies in milliseconds (_ms).
type jsonReport struct {
	Config      jsonConfig  `json:"config"`
	OutageFromS float64     `json:"outage_from_s"`
	OutageToS   float64     `json:"outage_to_s"`
	BucketS     float64     `json:"bucket_s"`
	PeakWindowS float64     `json:"peak_window_s"`
	ElapsedS    float64     `json:"elapsed_s"`
	Interrupted bool        `json:"interrupted"`
	Setups      []jsonSetup `json:"setups"`
	SWR         jsonSWR     `json:"herd_swr_settings"`
	Notes       []string    `json:"notes"`
	Verdict     jsonVerdict `json:"verdict"`
}

// jsonVerdict judges the run: ok is false when a herd setup failed more
// than half of its requests (failing) or when the machine could not send
// the requests on time (behind); both list setup ids.
type jsonVerdict struct {
	OK      bool     `json:"ok"`
	Failing []string `json:"failing"`
	Behind  []string `json:"behind"`
	Lines   []string `json:"lines"`
}

type jsonConfig struct {
	Command    string  `json:"command"`
	Store      string  `json:"store"`
	DurationS  float64 `json:"duration_s"`
	Clients    int     `json:"clients"`
	IntervalS  float64 `json:"interval_s"`
	Keys       int     `json:"keys"`
	Zipf       float64 `json:"zipf"`
	LatencyS   float64 `json:"latency_s"`
	ErrorRate  float64 `json:"error_rate"`
	OutageS    float64 `json:"outage_s"`
	OutageHang float64 `json:"outage_hang_s"`
	TimeoutS   float64 `json:"timeout_s"`
	TTLS       float64 `json:"ttl_s"`
	Instances  int     `json:"instances"`
	Seed       uint64  `json:"seed"`
}

type jsonSWR struct {
	RefreshAfterS float64 `json:"refresh_after_s"`
	TTLS          float64 `json:"ttl_s"`
	StaleIfErrorS float64 `json:"stale_if_error_s"`
	LoadTimeoutS  float64 `json:"load_timeout_s"`
}

type jsonSetup struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	Requests        uint64         `json:"requests"`
	Errors          uint64         `json:"errors"`
	OutageErrors    uint64         `json:"outage_errors"`
	Stale           uint64         `json:"stale"`
	Hits            uint64         `json:"hits"`
	HitRatio        float64        `json:"hit_ratio"`
	SourceCalls     uint64         `json:"source_calls"`
	PeakCallsPerSec float64        `json:"peak_calls_per_s"`
	P50MS           float64        `json:"p50_ms"`
	P99MS           float64        `json:"p99_ms"`
	MaxMS           float64        `json:"max_ms"`
	Late            uint64         `json:"late"`
	NotSent         uint64         `json:"not_sent"`
	LagP99MS        float64        `json:"lag_p99_ms"`
	LagMaxMS        float64        `json:"lag_max_ms"`
	Herd            *jsonHerdStats `json:"herd_stats,omitempty"`
	Timeline        []jsonPoint    `json:"timeline"`
}

type jsonHerdStats struct {
	Hits             uint64  `json:"hits"`
	StaleHits        uint64  `json:"stale_hits"`
	Misses           uint64  `json:"misses"`
	SharedWaits      uint64  `json:"shared_waits"`
	LockWaits        uint64  `json:"lock_waits"`
	Loads            uint64  `json:"loads"`
	LoadErrors       uint64  `json:"load_errors"`
	LoadTimeS        float64 `json:"load_time_s"`
	RefreshesQueued  uint64  `json:"refreshes_queued"`
	RefreshesDropped uint64  `json:"refreshes_dropped"`
	RefreshesFailed  uint64  `json:"refreshes_failed"`
	StaleOnError     uint64  `json:"stale_on_error"`
	StoreErrors      uint64  `json:"store_errors"`
}

type jsonPoint struct {
	AtS         float64 `json:"t_s"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	SourceCalls uint64  `json:"source_calls"`
	P99MS       float64 `json:"p99_ms"`
}

func ids(kinds []sim.Kind) []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.ID()
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// JSON writes r as one indented JSON document.
func JSON(w io.Writer, r *sim.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonOf(r))
}

// jsonOf is the JSON document of r.
func jsonOf(r *sim.Report) jsonReport {
	c := &r.Config
	swr := c.SWR()
	out := jsonReport{
		Config: jsonConfig{
			Command: commandOf(c.Command), Store: storeName(c), DurationS: c.Duration.Seconds(), Clients: c.Clients, IntervalS: c.Interval.Seconds(),
			Keys: c.Keys, Zipf: c.Zipf, LatencyS: c.Latency.Seconds(), ErrorRate: c.ErrorRate,
			OutageS: c.Outage.Seconds(), OutageHang: c.OutageHang.Seconds(), TimeoutS: c.Timeout.Seconds(),
			TTLS: c.TTL.Seconds(), Instances: c.Instances, Seed: c.Seed,
		},
		OutageFromS: r.OutageFrom.Seconds(), OutageToS: r.OutageTo.Seconds(),
		BucketS: r.Bucket.Seconds(), PeakWindowS: r.PeakWindow.Seconds(),
		ElapsedS: r.Elapsed.Seconds(), Interrupted: r.Interrupted,
		SWR: jsonSWR{
			RefreshAfterS: swr.RefreshAfter.Seconds(), TTLS: swr.TTL.Seconds(),
			StaleIfErrorS: swr.StaleIfError.Seconds(), LoadTimeoutS: swr.LoadTimeout.Seconds(),
		},
		Setups: make([]jsonSetup, 0, len(r.Setups)),
		Notes:  append([]string{}, c.Notes...),
	}
	v := r.Verdict()
	out.Verdict = jsonVerdict{OK: v.OK(), Failing: ids(v.Failing), Behind: ids(v.Behind), Lines: Verdict(r)}
	for i := range r.Setups {
		s := &r.Setups[i]
		js := jsonSetup{
			ID: s.Kind.ID(), Name: s.Kind.String(), Requests: s.Requests, Errors: s.Errors,
			OutageErrors: s.OutageErrors, Stale: s.Stale, Hits: s.Hits, HitRatio: s.HitRatio(),
			SourceCalls: s.SourceCalls, PeakCallsPerSec: s.PeakCallsPerSec,
			P50MS: ms(s.P50), P99MS: ms(s.P99), MaxMS: ms(s.Max),
			Late: s.Late, NotSent: s.NotSent, LagP99MS: ms(s.LagP99), LagMaxMS: ms(s.LagMax),
			Timeline: make([]jsonPoint, len(s.Timeline)),
		}
		if h := s.HerdStats; h != nil {
			js.Herd = &jsonHerdStats{
				Hits: h.Hits, StaleHits: h.StaleHits, Misses: h.Misses, SharedWaits: h.SharedWaits,
				LockWaits: h.LockWaits, Loads: h.Loads, LoadErrors: h.LoadErrors, LoadTimeS: h.LoadTime.Seconds(),
				RefreshesQueued: h.RefreshesQueued, RefreshesDropped: h.RefreshesDropped,
				RefreshesFailed: h.RefreshesFailed, StaleOnError: h.StaleOnError, StoreErrors: h.StoreErrors,
			}
		}
		for j, p := range s.Timeline {
			js.Timeline[j] = jsonPoint{AtS: p.At.Seconds(), Requests: p.Requests, Errors: p.Errors, SourceCalls: p.SourceCalls, P99MS: ms(p.P99)}
		}
		out.Setups = append(out.Setups, js)
	}
	return out
}
