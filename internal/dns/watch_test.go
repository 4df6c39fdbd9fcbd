package dns

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// TestEndToEnd feeds an Index from a fake clientset through Watch, serves it on loopback UDP and
// TCP, and follows changes to the cluster in the answers.
func TestEndToEnd(t *testing.T) {
	f := testFixture()
	var objs []runtime.Object
	for _, n := range f.namespaces {
		objs = append(objs, n)
	}
	for _, s := range f.services {
		objs = append(objs, s)
	}
	for _, s := range f.slices {
		objs = append(objs, s)
	}
	client := fake.NewClientset(objs...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	u := startUpstream(t)
	metrics := NewMetrics()
	fwd, err := NewForwarder(ForwarderConfig{Upstreams: []string{u.addr}, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, ServerConfig{Index: ix, Forwarder: fwd, Metrics: metrics})

	// Before the first sync, cluster names are SERVFAIL (not a cacheable NXDOMAIN); others forward.
	if m := exchange(t, "udp", s.udp, query("svc1.testns.svc.cluster.local.", dns.TypeA)); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("before sync: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if err := ix.Watch(ctx, client); err != nil {
		t.Fatal(err)
	}
	if !ix.Ready() {
		t.Fatal("not ready after Watch returned")
	}

	ask := func(netw, name string, qtype uint16) *dns.Msg {
		addr := s.udp
		if netw == "tcp" {
			addr = s.tcp
		}
		return exchange(t, netw, addr, query(name, qtype))
	}
	answers := func(m *dns.Msg) string {
		var out []string
		for _, rr := range m.Answer {
			f := strings.Fields(rr.String())
			out = append(out, f[len(f)-1])
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		netw, name string
		qtype      uint16
		rcode      int
		answers    int
	}{
		{"udp", "svc1.testns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 1},
		{"tcp", "_http._tcp.hdls.testns.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, 4},
		{"udp", "web-0.hdls.testns.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{"udp", "3.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1},
		{"udp", "ext.testns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 2},
		{"udp", "dns-version.cluster.local.", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"udp", "empty.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 0},
		{"udp", "nope.testns.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
		{"tcp", "example.com.", dns.TypeA, dns.RcodeSuccess, 1},
	} {
		if m := ask(c.netw, c.name, c.qtype); m.Rcode != c.rcode || len(m.Answer) != c.answers {
			t.Errorf("%s %s %s: %s with %d answers, want %s with %d", c.netw, c.name, dns.TypeToString[c.qtype],
				dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[c.rcode], c.answers)
		}
	}

	// eventually polls until the answer to a question becomes want.
	eventually := func(desc, name string, qtype uint16, want func(*dns.Msg) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			m := ask("udp", name, qtype)
			if want(m) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s still answers %s %q", desc, name, dns.RcodeToString[m.Rcode], answers(m))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	core, disc := client.CoreV1(), client.DiscoveryV1()

	// A new Service appears.
	if _, err := core.Services("testns").Create(ctx, clusterIPService("testns", "late", []string{"10.96.0.77"}, port("http", corev1.ProtocolTCP, 80)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("new Service", "late.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return answers(m) == "10.96.0.77" })
	eventually("new Service's PTR", "77.0.96.10.in-addr.arpa.", dns.TypePTR, func(m *dns.Msg) bool { return answers(m) == "late.testns.svc.cluster.local." })

	// An endpoint stops being ready; a slice goes.
	if _, err := disc.EndpointSlices("testns").Update(ctx, endpointSlice("testns", "hdls", "hdls-b", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)}, ep{ip: "10.244.2.2", hostname: "web-2", ready: no}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("not-ready endpoint", "web-2.hdls.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
	eventually("not-ready endpoint", "hdls.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool {
		return len(m.Answer) == 3 && !strings.Contains(answers(m), "10.244.2.2")
	})
	if err := disc.EndpointSlices("testns").Delete(ctx, "hdls-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Only the IPv6 endpoint is left: A is NODATA now.
	eventually("deleted slice", "hdls.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool {
		return m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0 && len(m.Ns) == 1
	})
	eventually("deleted slice", "hdls.testns.svc.cluster.local.", dns.TypeAAAA, func(m *dns.Msg) bool { return answers(m) == "fd00:244::2" })

	// A Service changes its ClusterIP, then goes.
	svc1, err := core.Services("testns").Get(ctx, "svc1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc1.Spec.ClusterIP, svc1.Spec.ClusterIPs = "10.96.0.101", []string{"10.96.0.101"}
	if _, err := core.Services("testns").Update(ctx, svc1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("changed ClusterIP", "svc1.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return answers(m) == "10.96.0.101" })
	eventually("old PTR", "1.0.96.10.in-addr.arpa.", dns.TypePTR, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError }) // upstream now
	if err := core.Services("testns").Delete(ctx, "svc1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("deleted Service", "svc1.testns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })

	// Namespaces come and go.
	if _, err := core.Namespaces().Create(ctx, namespace("newns"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("new namespace", "newns.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess })
	eventually("new namespace's pods", "10-1-2-3.newns.pod.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return answers(m) == "10.1.2.3" })
	if err := core.Namespaces().Delete(ctx, "empty", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("deleted namespace", "empty.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })

	if text := scrape(t, metrics); !strings.Contains(text, `podnet_dns_requests_total{family="1",proto="tcp",type="SRV"} 1`) {
		t.Errorf("metrics:\n%s", text)
	}
}

func TestWatchVerifiedPods(t *testing.T) {
	client := fake.NewClientset(namespace("testns"), newPod("testns", "a", "10.244.1.9"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ix, _ := NewIndex(Config{PodMode: PodModeVerified})
	if err := ix.Watch(ctx, client); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(ix)
	if m := r.Resolve(query("10-244-1-9.testns.pod.cluster.local.", dns.TypeA)); len(m.Answer) != 1 {
		t.Fatalf("existing pod: %v", m)
	}
	if _, err := client.CoreV1().Pods("testns").Create(ctx, newPod("testns", "b", "10.244.1.10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(r.Resolve(query("10-244-1-10.testns.pod.cluster.local.", dns.TypeA)).Answer) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("new pod never resolved")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ix, _ := NewIndex(Config{})
	if err := ix.Watch(ctx, fake.NewClientset()); err == nil {
		t.Error("Watch with a cancelled context: no error")
	}
}
