package dns

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names follow CoreDNS's with podnet_dns_ for its coredns_dns_ or coredns_ prefix:
// podnet_dns_requests_total{proto,family,type}, podnet_dns_responses_total{rcode},
// podnet_dns_request_duration_seconds{type}, podnet_dns_cache_{hits,misses}_total,
// podnet_dns_cache_entries, podnet_dns_forward_{requests,responses}_total and
// podnet_dns_forward_request_duration_seconds. The per-query counters are kept per UDP reader (one cache line set each, no shared
// atomic on the hot path) and summed when scraped.
const metricsPrefix = "podnet_dns_"

// Label values of the type label, as CoreDNS names them; anything else is "other".
var typeNames = [...]string{"A", "AAAA", "ANY", "CNAME", "HTTPS", "MX", "NS", "PTR", "SOA", "SRV", "SVCB", "TXT", "other"}

func typeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeANY:
		return 2
	case dns.TypeCNAME:
		return 3
	case dns.TypeHTTPS:
		return 4
	case dns.TypeMX:
		return 5
	case dns.TypeNS:
		return 6
	case dns.TypePTR:
		return 7
	case dns.TypeSOA:
		return 8
	case dns.TypeSRV:
		return 9
	case dns.TypeSVCB:
		return 10
	case dns.TypeTXT:
		return 11
	}
	return 12
}

const (
	nTypes   = len(typeNames)
	nRcodes  = 24 // 0..23, the rcodes with names; others count as 23's "other"
	protoUDP = 0
	protoTCP = 1
)

// durationBuckets: 10 µs doubling to ~5 s (CoreDNS starts at 250 µs, where an in-memory answer
// would leave every observation in the first bucket).
var durationBuckets = prometheus.ExponentialBuckets(0.00001, 2, 20)

var durationBucketsNs = func() []uint64 {
	out := make([]uint64, len(durationBuckets))
	for i, b := range durationBuckets {
		out[i] = uint64(b * 1e9)
	}
	return out
}()

// statShard holds one reader's counters.
type statShard struct {
	requests  [2][2][nTypes]atomic.Uint64 // proto, family (0 = IPv4, 1 = IPv6), type
	responses [nRcodes]atomic.Uint64
	durCount  [nTypes][]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	durSum    [nTypes]atomic.Uint64   // nanoseconds
	_         [64]byte
}

func newStatShard() *statShard {
	s := &statShard{}
	for i := range s.durCount {
		s.durCount[i] = make([]atomic.Uint64, len(durationBucketsNs)+1)
	}
	return s
}

func (s *statShard) observe(proto, family int, qtype uint16, rcode int, d time.Duration) {
	t := typeIndex(qtype)
	s.requests[proto][family][t].Add(1)
	if rcode < 0 || rcode >= nRcodes {
		rcode = nRcodes - 1
	}
	s.responses[rcode].Add(1)
	ns := uint64(max(d, 0))
	b := 0
	for b < len(durationBucketsNs) && ns > durationBucketsNs[b] {
		b++
	}
	s.durCount[t][b].Add(1)
	s.durSum[t].Add(ns)
}

// Metrics is one DNS server's metrics on a registry of its own.
type Metrics struct {
	reg *prometheus.Registry

	mu     sync.Mutex
	shards []*statShard
	shared *statShard // for queries answered off the readers (TCP, forwarding)
	cache  func() (positive, negative int)

	cacheHits    *prometheus.CounterVec
	cacheMisses  prometheus.Counter
	fwdRequests  *prometheus.CounterVec
	fwdResponses *prometheus.CounterVec
	fwdDuration  *prometheus.HistogramVec

	requestsDesc, responsesDesc, durationDesc, cacheEntriesDesc *prometheus.Desc
}

// NewMetrics returns metrics on a new registry, with the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		shared: newStatShard(),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricsPrefix + "cache_hits_total", Help: "The count of cache hits.",
		}, []string{"type"}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricsPrefix + "cache_misses_total", Help: "The count of cache misses.",
		}),
		fwdRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricsPrefix + "forward_requests_total", Help: "Counter of requests made per upstream.",
		}, []string{"to"}),
		fwdResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricsPrefix + "forward_responses_total", Help: "Counter of responses received per upstream.",
		}, []string{"to", "rcode"}),
		fwdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: metricsPrefix + "forward_request_duration_seconds", Help: "Histogram of the time each request took.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, []string{"to", "rcode"}),
		requestsDesc: prometheus.NewDesc(metricsPrefix+"requests_total",
			"Counter of DNS requests made per protocol, family and type.", []string{"proto", "family", "type"}, nil),
		responsesDesc: prometheus.NewDesc(metricsPrefix+"responses_total",
			"Counter of response status codes.", []string{"rcode"}, nil),
		durationDesc: prometheus.NewDesc(metricsPrefix+"request_duration_seconds",
			"Histogram of the time (in seconds) each request took per type.", []string{"type"}, nil),
		cacheEntriesDesc: prometheus.NewDesc(metricsPrefix+"cache_entries",
			"The number of elements in the cache.", []string{"type"}, nil),
	}
	m.cacheHits.WithLabelValues("success")
	m.cacheHits.WithLabelValues("denial")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.cacheHits, m.cacheMisses, m.fwdRequests, m.fwdResponses, m.fwdDuration, (*queryCollector)(m))
	return m
}

// Registry is where the metrics live.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *Metrics) newShard() *statShard {
	s := newStatShard()
	m.mu.Lock()
	m.shards = append(m.shards, s)
	m.mu.Unlock()
	return s
}

func (m *Metrics) cacheHit(negative bool) {
	if m == nil {
		return
	}
	if negative {
		m.cacheHits.WithLabelValues("denial").Inc()
	} else {
		m.cacheHits.WithLabelValues("success").Inc()
	}
}

func (m *Metrics) cacheMiss() {
	if m != nil {
		m.cacheMisses.Inc()
	}
}

func (m *Metrics) forwarded(to string, r *dns.Msg, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.fwdRequests.WithLabelValues(to).Inc()
	rcode := "error"
	if err == nil {
		rcode = rcodeName(r.Rcode)
	}
	m.fwdResponses.WithLabelValues(to, rcode).Inc()
	m.fwdDuration.WithLabelValues(to, rcode).Observe(d.Seconds())
}

func (m *Metrics) watchCache(c *answerCache) {
	if m == nil || c == nil {
		return
	}
	m.mu.Lock()
	m.cache = c.len
	m.mu.Unlock()
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return strconv.Itoa(rc)
}

// queryCollector sums the readers' shards at scrape time.
type queryCollector Metrics

func (c *queryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requestsDesc
	ch <- c.responsesDesc
	ch <- c.durationDesc
	ch <- c.cacheEntriesDesc
}

func (c *queryCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	m.mu.Lock()
	shards := append([]*statShard{m.shared}, m.shards...)
	cacheLen := m.cache
	m.mu.Unlock()
	var requests [2][2][nTypes]uint64
	var responses [nRcodes]uint64
	var durCount [nTypes][]uint64
	var durSum [nTypes]uint64
	for t := range durCount {
		durCount[t] = make([]uint64, len(durationBucketsNs)+1)
	}
	for _, s := range shards {
		for p := range s.requests {
			for f := range s.requests[p] {
				for t := range s.requests[p][f] {
					requests[p][f][t] += s.requests[p][f][t].Load()
				}
			}
		}
		for r := range s.responses {
			responses[r] += s.responses[r].Load()
		}
		for t := range s.durCount {
			for b := range s.durCount[t] {
				durCount[t][b] += s.durCount[t][b].Load()
			}
			durSum[t] += s.durSum[t].Load()
		}
	}
	protos := [2]string{"udp", "tcp"}
	families := [2]string{"1", "2"}
	for p := range requests {
		for f := range requests[p] {
			for t, n := range requests[p][f] {
				if n > 0 {
					ch <- prometheus.MustNewConstMetric(c.requestsDesc, prometheus.CounterValue, float64(n), protos[p], families[f], typeNames[t])
				}
			}
		}
	}
	for r, n := range responses {
		if n > 0 {
			name := rcodeName(r)
			if r == nRcodes-1 {
				name = "other"
			}
			ch <- prometheus.MustNewConstMetric(c.responsesDesc, prometheus.CounterValue, float64(n), name)
		}
	}
	for t := range durCount {
		var total uint64
		buckets := make(map[float64]uint64, len(durationBuckets))
		for b, ub := range durationBuckets {
			total += durCount[t][b]
			buckets[ub] = total
		}
		total += durCount[t][len(durationBuckets)]
		if total == 0 {
			continue
		}
		ch <- prometheus.MustNewConstHistogram(c.durationDesc, total, float64(durSum[t])/1e9, buckets, typeNames[t])
	}
	if cacheLen != nil {
		pos, neg := cacheLen()
		ch <- prometheus.MustNewConstMetric(c.cacheEntriesDesc, prometheus.GaugeValue, float64(pos), "success")
		ch <- prometheus.MustNewConstMetric(c.cacheEntriesDesc, prometheus.GaugeValue, float64(neg), "denial")
	}
}
