package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExposition(t *testing.T) {
	p := NewProxy("")
	end := time.Unix(1700000000, 500_000_000)
	p.RecordSync(true, 1500*time.Millisecond, end)
	p.RecordSync(false, 3*time.Millisecond, end)
	p.RecordQueued(end.Add(-time.Second))
	p.RecordSyncFailure()
	p.NFTablesCleanupFailuresTotal.Inc()
	p.ObserveNetworkProgramming(end.Add(-2*time.Second), end)
	p.ObserveNetworkProgramming(time.Time{}, end)          // ignored: no trigger time
	p.ObserveNetworkProgramming(end.Add(time.Second), end) // ignored: clock skew
	p.SetPendingChanges(4, 7)
	p.ServiceChangesTotal.Add(10)
	p.EndpointChangesTotal.Add(20)
	p.SetNoLocalEndpoints(1, 2)
	p.SetNFTablesElements(map[string]int{"service-ips": 30000, "no-endpoint-services": 2})
	p.SetNFTablesElements(map[string]int{"service-ips": 30003})
	p.ConntrackEntriesDeleted.Add(5)
	p.ObserveHealthRequest("/healthz", 200)
	p.ObserveHealthRequest("/healthz", 503)
	p.ObserveHealthRequest("/livez", 200)
	p.ObserveHealthRequest("/other", 200) // not counted

	text := scrape(t, p.Handler())

	types := map[string]string{
		"kubeproxy_sync_proxy_rules_duration_seconds":                "histogram",
		"kubeproxy_sync_full_proxy_rules_duration_seconds":           "histogram",
		"kubeproxy_sync_partial_proxy_rules_duration_seconds":        "histogram",
		"kubeproxy_network_programming_duration_seconds":             "histogram",
		"kubeproxy_sync_proxy_rules_last_timestamp_seconds":          "gauge",
		"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds":   "gauge",
		"kubeproxy_sync_proxy_rules_endpoint_changes_pending":        "gauge",
		"kubeproxy_sync_proxy_rules_endpoint_changes_total":          "counter",
		"kubeproxy_sync_proxy_rules_service_changes_pending":         "gauge",
		"kubeproxy_sync_proxy_rules_service_changes_total":           "counter",
		"kubeproxy_sync_proxy_rules_nftables_sync_failures_total":    "counter",
		"kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total": "counter",
		"kubeproxy_sync_proxy_rules_no_local_endpoints_total":        "gauge",
		"kubeproxy_proxy_healthz_total":                              "counter",
		"kubeproxy_proxy_livez_total":                                "counter",
		"podnet_proxy_nftables_elements":                             "gauge",
		"podnet_proxy_conntrack_entries_deleted_total":               "counter",
		"go_goroutines":             "gauge",
		"process_cpu_seconds_total": "counter",
	}
	for name, typ := range types {
		if !strings.Contains(text, "\n# TYPE "+name+" "+typ+"\n") {
			t.Errorf("no %q of type %s", name, typ)
		}
	}

	for _, line := range []string{
		`kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} 2`,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.004"} 1`,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="16.384"} 2`,
		`kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1`,
		`kubeproxy_sync_full_proxy_rules_duration_seconds_sum{ip_family="IPv4"} 1.5`,
		`kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1`,
		`kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"} 1`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0"} 0`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="2"} 1`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="300"} 1`,
		`kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7000000005e+09`,
		`kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv4"} 1.6999999995e+09`,
		`kubeproxy_sync_proxy_rules_service_changes_pending 4`,
		`kubeproxy_sync_proxy_rules_endpoint_changes_pending 7`,
		`kubeproxy_sync_proxy_rules_service_changes_total 10`,
		`kubeproxy_sync_proxy_rules_endpoint_changes_total 20`,
		`kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv4"} 1`,
		`kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 1`,
		`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="internal"} 1`,
		`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"} 2`,
		`kubeproxy_proxy_healthz_total{code="200"} 1`,
		`kubeproxy_proxy_healthz_total{code="503"} 1`,
		`kubeproxy_proxy_livez_total{code="200"} 1`,
		`podnet_proxy_nftables_elements{map="service-ips"} 30003`,
		`podnet_proxy_conntrack_entries_deleted_total 5`,
	} {
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Errorf("missing line %s", line)
		}
	}
	if strings.Contains(text, `map="no-endpoint-services"`) {
		t.Error("a map dropped from the element counts is still exported")
	}
	if strings.Contains(text, `code="200"} 2`) {
		t.Error("an unknown health path was counted")
	}
	if n := strings.Count(text, `kubeproxy_network_programming_duration_seconds_bucket{`); n != 82 {
		t.Errorf("network programming histogram has %d buckets, want kube-proxy's 81 + Inf", n)
	}
	if n := strings.Count(text, `kubeproxy_sync_proxy_rules_duration_seconds_bucket{`); n != 16 {
		t.Errorf("sync histogram has %d buckets, want kube-proxy's 15 + Inf", n)
	}
}

// Two nodes' metrics live side by side in one process.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := NewProxy("IPv4"), NewProxy("IPv6")
	a.ServiceChangesTotal.Inc()
	if ta, tb := scrape(t, a.Handler()), scrape(t, b.Handler()); !strings.Contains(ta, "\nkubeproxy_sync_proxy_rules_service_changes_total 1\n") ||
		!strings.Contains(tb, "\nkubeproxy_sync_proxy_rules_service_changes_total 0\n") ||
		!strings.Contains(tb, `kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv6"} 0`) {
		t.Errorf("registries share state or lack the family label:\n%s\n---\n%s", ta, tb)
	}
}

func TestServe(t *testing.T) {
	p := NewProxy("")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram") {
		t.Fatalf("/metrics: %s\n%s", resp.Status, b)
	}
	resp, err = client.Get("http://" + l.Addr().String() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/other: %s", resp.Status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
