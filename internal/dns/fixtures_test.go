package dns

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func clusterIPService(ns, name string, ips []string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIPs: ips, Ports: ports},
	}
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
	}
	return s
}

func headlessService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return clusterIPService(ns, name, []string{corev1.ClusterIPNone}, ports...)
}

func externalNameService(ns, name, target string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: target},
	}
}

func port(name string, proto corev1.Protocol, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p}
}

type ep struct {
	ip       string
	hostname string
	ready    *bool // nil: condition unknown, which counts as ready
}

func slicePort(name string, proto corev1.Protocol, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptrTo(name), Protocol: ptrTo(proto), Port: ptrTo(p)}
}

func endpointSlice(ns, svc, name string, family discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
		Ports:       ports,
	}
	for _, e := range eps {
		de := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			de.Hostname = ptrTo(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, de)
	}
	return s
}

var (
	yes = ptrTo(true)
	no  = ptrTo(false)
)

// fixture is the cluster most tests answer from.
type fixture struct {
	services   []*corev1.Service
	slices     []*discoveryv1.EndpointSlice
	namespaces []*corev1.Namespace
}

func testFixture() fixture {
	httpSlicePort := []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)}
	notReadyPublished := headlessService("testns", "hdlsnr")
	notReadyPublished.Spec.PublishNotReadyAddresses = true
	tolerate := headlessService("testns", "hdlstol")
	tolerate.Annotations = map[string]string{tolerateUnreadyAnnotation: "true"}
	lb := clusterIPService("other", "lb", []string{"10.96.0.20"}, port("https", corev1.ProtocolTCP, 443))
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	return fixture{
		namespaces: []*corev1.Namespace{namespace("testns"), namespace("empty"), namespace("kube-system")},
		services: []*corev1.Service{
			clusterIPService("testns", "svc1", []string{"10.96.0.1"},
				port("http", corev1.ProtocolTCP, 80), port("", corev1.ProtocolTCP, 8080), port("dns", corev1.ProtocolUDP, 53)),
			clusterIPService("testns", "svc6", []string{"fd00:96::1"}, port("http", corev1.ProtocolTCP, 80)),
			clusterIPService("testns", "dual", []string{"10.96.0.3", "fd00:96::3"}, port("http", corev1.ProtocolTCP, 80)),
			clusterIPService("testns", "pending", nil, port("http", corev1.ProtocolTCP, 80)),
			headlessService("testns", "hdls", port("http", corev1.ProtocolTCP, 8080)),
			notReadyPublished,
			tolerate,
			headlessService("testns", "hdlsempty"),
			externalNameService("testns", "ext", "example.com"),
			externalNameService("testns", "extin", "SVC1.testns.svc.cluster.local."),
			externalNameService("testns", "extnx", "nosuch.testns.svc.cluster.local"),
			lb,
		},
		slices: []*discoveryv1.EndpointSlice{
			endpointSlice("testns", "hdls", "hdls-a", discoveryv1.AddressTypeIPv4, httpSlicePort,
				ep{ip: "10.244.1.2", ready: yes},
				ep{ip: "10.244.1.3", hostname: "web-0", ready: yes},
				ep{ip: "10.244.1.4", hostname: "web-1", ready: no},
				ep{ip: "10.244.1.5"}),
			// A second slice of the same Service.
			endpointSlice("testns", "hdls", "hdls-b", discoveryv1.AddressTypeIPv4, httpSlicePort,
				ep{ip: "10.244.2.2", hostname: "web-2", ready: yes}),
			// The IPv6 slice of the same (dual-stack) pods.
			endpointSlice("testns", "hdls", "hdls-v6", discoveryv1.AddressTypeIPv6, httpSlicePort,
				ep{ip: "fd00:244::2", hostname: "web-0", ready: yes}),
			endpointSlice("testns", "hdlsnr", "hdlsnr-a", discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{slicePort("", corev1.ProtocolTCP, 5432)},
				ep{ip: "10.244.3.2", hostname: "db-0", ready: no}),
			endpointSlice("testns", "hdlstol", "hdlstol-a", discoveryv1.AddressTypeIPv4, nil,
				ep{ip: "10.244.3.3", ready: no}),
			endpointSlice("testns", "hdlsempty", "hdlsempty-a", discoveryv1.AddressTypeIPv4, httpSlicePort,
				ep{ip: "10.244.4.2", hostname: "x", ready: no}),
			// A ClusterIP Service's endpoints make no records.
			endpointSlice("testns", "svc1", "svc1-a", discoveryv1.AddressTypeIPv4, httpSlicePort,
				ep{ip: "10.244.5.2", hostname: "nope", ready: yes}),
		},
	}
}

// fixedClock is a settable clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time          { return c.t }
func (c *fixedClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestIndex(t testing.TB, mode PodMode, f fixture) *Index {
	t.Helper()
	clock := &fixedClock{t: time.Unix(1700000000, 0)}
	ix, err := NewIndex(Config{PodMode: mode, NameserverAddrs: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ix.Replace(f.services, f.slices, nil, f.namespaces)
	return ix
}

// rrs parses zone-file lines.
func rrs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

func sortedStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

func sameRRs(got, want []dns.RR) error {
	g, w := sortedStrings(got), sortedStrings(want)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		return fmt.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(g, "\n\t"), strings.Join(w, "\n\t"))
	}
	return nil
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func reverse(t testing.TB, ip string) string {
	t.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ptrTo[T any](v T) *T { return &v }

func newPod(ns, name string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}
