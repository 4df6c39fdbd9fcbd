// Package metrics holds one node's proxy metrics on the node's own Prometheus registry (many node
// agents share a process in the lab, so nothing goes on the global registry), under kube-proxy's
// metric names, types, help texts, labels and buckets, plus podnet's own.
//
// Metrics kube-proxy labels with ip_family carry it here too, fixed to the family given to
// NewProxy; the exported fields are already bound to it.
package metrics

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podnet/podnet/internal/serve"
)

const (
	kubeProxySubsystem = "kubeproxy"
	podnetNamespace    = "podnet"
	podnetProxy        = "proxy"
)

// Traffic policy label values of kubeproxy_sync_proxy_rules_no_local_endpoints_total.
const (
	TrafficPolicyInternal = "internal"
	TrafficPolicyExternal = "external"
)

// syncBuckets are kube-proxy's buckets for sync durations: 1 ms doubling to ~16 s.
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// networkProgrammingBuckets are kube-proxy's: 0 (kube-proxy's bucket merge starts with a zero
// bucket), 0.25 s, 0.5 s, 1..59 s by 1 s, 60..115 s by 5 s, 2..5 min by 30 s.
var networkProgrammingBuckets = mergeBuckets(
	prometheus.LinearBuckets(0.25, 0.25, 2),
	prometheus.LinearBuckets(1, 1, 59),
	prometheus.LinearBuckets(60, 5, 12),
	prometheus.LinearBuckets(120, 30, 7),
)

func mergeBuckets(parts ...[]float64) []float64 {
	out := []float64{0}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Proxy is one node's proxy metrics and the registry that exposes them.
type Proxy struct {
	registry *prometheus.Registry
	family   string

	// kube-proxy's metrics.

	// SyncProxyRulesLatency: kubeproxy_sync_proxy_rules_duration_seconds, every sync.
	SyncProxyRulesLatency prometheus.Observer
	// SyncFullProxyRulesLatency: kubeproxy_sync_full_proxy_rules_duration_seconds, full syncs.
	SyncFullProxyRulesLatency prometheus.Observer
	// SyncPartialProxyRulesLatency: kubeproxy_sync_partial_proxy_rules_duration_seconds, partial syncs.
	SyncPartialProxyRulesLatency prometheus.Observer
	// NetworkProgrammingLatency: kubeproxy_network_programming_duration_seconds, from a change's
	// trigger time (the EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time) to the
	// end of the sync that programmed it.
	NetworkProgrammingLatency prometheus.Observer
	// SyncProxyRulesLastTimestamp: kubeproxy_sync_proxy_rules_last_timestamp_seconds, the last
	// successful sync.
	SyncProxyRulesLastTimestamp prometheus.Gauge
	// SyncProxyRulesLastQueuedTimestamp: kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds.
	SyncProxyRulesLastQueuedTimestamp prometheus.Gauge
	// EndpointChangesPending / EndpointChangesTotal: kubeproxy_sync_proxy_rules_endpoint_changes_{pending,total}.
	EndpointChangesPending prometheus.Gauge
	EndpointChangesTotal   prometheus.Counter
	// ServiceChangesPending / ServiceChangesTotal: kubeproxy_sync_proxy_rules_service_changes_{pending,total}.
	ServiceChangesPending prometheus.Gauge
	ServiceChangesTotal   prometheus.Counter
	// NFTablesSyncFailuresTotal: kubeproxy_sync_proxy_rules_nftables_sync_failures_total.
	NFTablesSyncFailuresTotal prometheus.Counter
	// NFTablesCleanupFailuresTotal: kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total.
	NFTablesCleanupFailuresTotal prometheus.Counter
	// SyncProxyRulesNoLocalEndpointsTotal: kubeproxy_sync_proxy_rules_no_local_endpoints_total, a
	// gauge (despite the name) of Services with a Local policy and no local endpoints, by
	// traffic_policy ("internal", "external"); use SetNoLocalEndpoints.
	SyncProxyRulesNoLocalEndpointsTotal *prometheus.GaugeVec
	// ProxyHealthzTotal / ProxyLivezTotal: kubeproxy_proxy_{healthz,livez}_total by HTTP code;
	// use ObserveHealthRequest.
	ProxyHealthzTotal *prometheus.CounterVec
	ProxyLivezTotal   *prometheus.CounterVec

	// podnet's metrics.

	// NFTablesElements: podnet_proxy_nftables_elements, elements in each of the proxy's nftables
	// sets and maps, by map.
	NFTablesElements *prometheus.GaugeVec
	// ConntrackEntriesDeleted: podnet_proxy_conntrack_entries_deleted_total, stale conntrack
	// entries the proxy deleted.
	ConntrackEntriesDeleted prometheus.Counter
}

// NewProxy returns the metrics of one node's proxy for ipFamily ("" means IPv4) on a new registry
// that also carries the Go runtime and process collectors.
func NewProxy(ipFamily corev1.IPFamily) *Proxy {
	if ipFamily == "" {
		ipFamily = corev1.IPv4Protocol
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	fam := prometheus.Labels{"ip_family": string(ipFamily)}
	famLabel := []string{"ip_family"}

	histogram := func(name, help string, buckets []float64) prometheus.Observer {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: kubeProxySubsystem, Name: name, Help: help, Buckets: buckets,
		}, famLabel)
		reg.MustRegister(v)
		return v.With(fam)
	}
	familyGauge := func(name, help string) prometheus.Gauge {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: kubeProxySubsystem, Name: name, Help: help}, famLabel)
		reg.MustRegister(v)
		return v.With(fam)
	}
	familyCounter := func(name, help string) prometheus.Counter {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: kubeProxySubsystem, Name: name, Help: help}, famLabel)
		reg.MustRegister(v)
		return v.With(fam)
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: kubeProxySubsystem, Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Subsystem: kubeProxySubsystem, Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	codeCounter := func(name, help string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: kubeProxySubsystem, Name: name, Help: help}, []string{"code"})
		reg.MustRegister(v)
		return v
	}

	p := &Proxy{
		registry: reg,
		family:   string(ipFamily),

		SyncProxyRulesLatency: histogram("sync_proxy_rules_duration_seconds",
			"SyncProxyRules latency in seconds", syncBuckets),
		SyncFullProxyRulesLatency: histogram("sync_full_proxy_rules_duration_seconds",
			"SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		SyncPartialProxyRulesLatency: histogram("sync_partial_proxy_rules_duration_seconds",
			"SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		NetworkProgrammingLatency: histogram("network_programming_duration_seconds",
			"In Cluster Network Programming Latency in seconds", networkProgrammingBuckets),
		SyncProxyRulesLastTimestamp: familyGauge("sync_proxy_rules_last_timestamp_seconds",
			"The last time proxy rules were successfully synced"),
		SyncProxyRulesLastQueuedTimestamp: familyGauge("sync_proxy_rules_last_queued_timestamp_seconds",
			"The last time a sync of proxy rules was queued"),
		EndpointChangesPending: gauge("sync_proxy_rules_endpoint_changes_pending",
			"Pending proxy rules Endpoint changes"),
		EndpointChangesTotal: counter("sync_proxy_rules_endpoint_changes_total",
			"Cumulative proxy rules Endpoint changes"),
		ServiceChangesPending: gauge("sync_proxy_rules_service_changes_pending",
			"Pending proxy rules Service changes"),
		ServiceChangesTotal: counter("sync_proxy_rules_service_changes_total",
			"Cumulative proxy rules Service changes"),
		NFTablesSyncFailuresTotal: familyCounter("sync_proxy_rules_nftables_sync_failures_total",
			"Cumulative proxy nftables sync failures"),
		NFTablesCleanupFailuresTotal: familyCounter("sync_proxy_rules_nftables_cleanup_failures_total",
			"Cumulative proxy nftables cleanup failures"),
		ProxyHealthzTotal: codeCounter("proxy_healthz_total", "Cumulative proxy healthz HTTP status"),
		ProxyLivezTotal:   codeCounter("proxy_livez_total", "Cumulative proxy livez HTTP status"),
	}

	noLocal := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Subsystem: kubeProxySubsystem,
		Name:      "sync_proxy_rules_no_local_endpoints_total",
		Help:      "Number of services with a Local traffic policy and no endpoints",
	}, []string{"ip_family", "traffic_policy"})
	reg.MustRegister(noLocal)
	p.SyncProxyRulesNoLocalEndpointsTotal = noLocal.MustCurryWith(fam)
	p.SetNoLocalEndpoints(0, 0)

	p.NFTablesElements = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: podnetNamespace, Subsystem: podnetProxy, Name: "nftables_elements",
		Help: "Elements in each of the proxy's nftables sets and maps",
	}, []string{"map"})
	p.ConntrackEntriesDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: podnetNamespace, Subsystem: podnetProxy, Name: "conntrack_entries_deleted_total",
		Help: "Stale conntrack entries deleted by the proxy",
	})
	reg.MustRegister(p.NFTablesElements, p.ConntrackEntriesDeleted)
	return p
}

// Registry is the node's registry, for registering more collectors.
func (p *Proxy) Registry() *prometheus.Registry { return p.registry }

// IPFamily is the ip_family label value of this node's metrics.
func (p *Proxy) IPFamily() string { return p.family }

// RecordSync records a successful sync that took took and finished at end: the overall and the
// full or partial duration histograms and the last-sync timestamp.
func (p *Proxy) RecordSync(full bool, took time.Duration, end time.Time) {
	s := took.Seconds()
	p.SyncProxyRulesLatency.Observe(s)
	if full {
		p.SyncFullProxyRulesLatency.Observe(s)
	} else {
		p.SyncPartialProxyRulesLatency.Observe(s)
	}
	p.SyncProxyRulesLastTimestamp.Set(unixSeconds(end))
}

// RecordSyncFailure counts a failed nftables sync.
func (p *Proxy) RecordSyncFailure() { p.NFTablesSyncFailuresTotal.Inc() }

// RecordQueued sets the last-queued timestamp (a sync was requested at at).
func (p *Proxy) RecordQueued(at time.Time) { p.SyncProxyRulesLastQueuedTimestamp.Set(unixSeconds(at)) }

// ObserveNetworkProgramming observes the latency from a change's trigger time to programmed (the
// end of the sync). Zero trigger times and negative latencies (clock skew) are ignored.
func (p *Proxy) ObserveNetworkProgramming(trigger, programmed time.Time) {
	if trigger.IsZero() {
		return
	}
	if d := programmed.Sub(trigger); d >= 0 {
		p.NetworkProgrammingLatency.Observe(d.Seconds())
	}
}

// SetPendingChanges sets the pending Service and endpoint change gauges.
func (p *Proxy) SetPendingChanges(services, endpoints int) {
	p.ServiceChangesPending.Set(float64(services))
	p.EndpointChangesPending.Set(float64(endpoints))
}

// SetNoLocalEndpoints sets the number of Services with internalTrafficPolicy Local (internal) and
// externalTrafficPolicy Local (external) that have no local endpoints.
func (p *Proxy) SetNoLocalEndpoints(internal, external int) {
	p.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues(TrafficPolicyInternal).Set(float64(internal))
	p.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues(TrafficPolicyExternal).Set(float64(external))
}

// SetNFTablesElements replaces the per-map element counts (maps absent from counts are dropped).
func (p *Proxy) SetNFTablesElements(counts map[string]int) {
	p.NFTablesElements.Reset()
	for m, n := range counts {
		p.NFTablesElements.WithLabelValues(m).Set(float64(n))
	}
}

// ObserveHealthRequest counts an answer of the proxy health server; it fits
// healthcheck.ProxyHealthServer.SetRequestObserver.
func (p *Proxy) ObserveHealthRequest(path string, code int) {
	switch path {
	case "/healthz":
		p.ProxyHealthzTotal.WithLabelValues(strconv.Itoa(code)).Inc()
	case "/livez":
		p.ProxyLivezTotal.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

// Handler serves the registry in the Prometheus exposition formats.
func (p *Proxy) Handler() http.Handler {
	// ContinueOnError: a failing collector (say, the process collector) does not hide the rest.
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve serves /metrics on l until ctx is done (then it shuts down and returns nil) or serving
// fails. It closes l.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.Handler())
	return serve.HTTP(ctx, l, mux)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
