package lab

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/podnet/podnet/internal/flows"
)

// FlowQuery is what GET /v1/flows takes (as query parameters): a filter over the lab's verdict
// log, and follow to keep streaming new records.
type FlowQuery struct {
	Verdict string        // "denied", or "" for all
	Node    string        // one node's records
	Pod     string        // namespace/name: records with this pod at either end
	Since   time.Duration // only records this recent (0: all kept)
	Limit   int           // only the newest Limit records (0: all)
	Follow  bool
}

// Values encodes q as query parameters.
func (q FlowQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("verdict", q.Verdict)
	set("node", q.Node)
	set("pod", q.Pod)
	if q.Since > 0 {
		set("since", q.Since.String())
	}
	if q.Limit > 0 {
		set("limit", strconv.Itoa(q.Limit))
	}
	if q.Follow {
		set("follow", "1")
	}
	return v
}

// handleFlows lists the verdict log as a JSON array, or with follow=1 streams it as one JSON
// record per line: the matching backlog, then each new record as a node logs it.
func (d *Daemon) handleFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := flows.Filter{Verdict: q.Get("verdict"), Node: q.Get("node"), Pod: q.Get("pod")}
	if s := q.Get("since"); s != "" {
		dur, err := time.ParseDuration(s)
		if err != nil || dur <= 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("since %q: want a positive duration such as 5m", s))
			return
		}
		f.Since = time.Now().Add(-dur)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number ≥ 0", s))
			return
		}
		f.Limit = n
	}
	if q.Get("follow") == "" {
		recs := d.flows.List(f)
		if recs == nil {
			recs = []flows.Record{}
		}
		writeJSON(w, recs)
		return
	}
	backlog, live := d.flows.Follow(r.Context(), f)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	for _, rec := range backlog {
		_ = enc.Encode(rec)
	}
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.ctx.Done():
			return
		case rec, ok := <-live:
			if !ok {
				return
			}
			if err := enc.Encode(rec); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}
