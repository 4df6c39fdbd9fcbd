//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	zone       = "cluster.local."
	namespaces = 10
)

// cluster is the object set both servers serve, generated deterministically from its sizes so the
// podnet child, the store behind CoreDNS and the load generator agree without passing objects.
type cluster struct {
	namespaces []*corev1.Namespace
	services   []*corev1.Service
	slices     []*discoveryv1.EndpointSlice
}

func nsName(i int) string { return fmt.Sprintf("ns-%d", i%namespaces) }

func clusterIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 96, byte((i + 10) >> 8), byte(i + 10)})
}

func epIP(k, j int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(k), byte(j + 1)}) }

func newCluster(nServices, nHeadless int) *cluster {
	c := &cluster{}
	for i := 0; i < namespaces; i++ {
		c.namespaces = append(c.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i)}})
	}
	for i := 0; i < nServices; i++ {
		ip := clusterIP(i).String()
		c.services = append(c.services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i), Namespace: nsName(i)},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				Ports: []corev1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
					{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9090},
				},
			},
		})
	}
	for k := 0; k < nHeadless; k++ {
		name, ns := fmt.Sprintf("hl-%d", k), nsName(k)
		c.services = append(c.services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			},
		})
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-x1", Namespace: ns,
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		}
		for j := 0; j < 3; j++ {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{epIP(k, j).String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
		c.slices = append(c.slices, sl)
	}
	return c
}

// Query kinds of the mix.
const (
	kindA        = iota // A of a ClusterIP Service: its ClusterIP
	kindSRV             // SRV _http._tcp of a ClusterIP Service: port 80, target the Service
	kindHeadless        // A of a headless Service: its three endpoint addresses
	kindNX              // A of a Service that does not exist, in an existing namespace: NXDOMAIN
)

var kindNames = []string{"A svc", "SRV svc", "A headless", "NXDOMAIN"}

// query is one question of the mix, packed, with what a correct answer holds.
type query struct {
	kind    int
	name    string
	qtype   uint16
	wire    []byte
	rcode   int
	ancount int
	want    []netip.Addr // A answers (headless: any order)
	target  string       // SRV target
}

// mix returns n questions drawn (seeded) from the names of the cluster: 40% A of a ClusterIP
// Service, 20% SRV, 20% A of a headless Service, 20% NXDOMAIN. Queries carry no EDNS0 record, as
// glibc's stub resolver sends them.
func mix(nServices, nHeadless, n int, seed uint64) []query {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	qs := make([]query, 0, n)
	for len(qs) < n {
		var q query
		switch x := r.IntN(10); {
		case x < 4:
			i := r.IntN(nServices)
			q = query{kind: kindA, name: fmt.Sprintf("svc-%d.%s.svc.%s", i, nsName(i), zone), qtype: dns.TypeA,
				ancount: 1, want: []netip.Addr{clusterIP(i)}}
		case x < 6:
			i := r.IntN(nServices)
			base := fmt.Sprintf("svc-%d.%s.svc.%s", i, nsName(i), zone)
			q = query{kind: kindSRV, name: "_http._tcp." + base, qtype: dns.TypeSRV, ancount: 1, target: base,
				want: []netip.Addr{clusterIP(i)}}
		case x < 8:
			k := r.IntN(nHeadless)
			q = query{kind: kindHeadless, name: fmt.Sprintf("hl-%d.%s.svc.%s", k, nsName(k), zone), qtype: dns.TypeA,
				ancount: 3, want: []netip.Addr{epIP(k, 0), epIP(k, 1), epIP(k, 2)}}
		default:
			i := r.IntN(nServices)
			q = query{kind: kindNX, name: fmt.Sprintf("missing-%d.%s.svc.%s", i, nsName(i), zone), qtype: dns.TypeA,
				rcode: dns.RcodeNameError}
		}
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		q.wire = b
		qs = append(qs, q)
	}
	return qs
}

// check compares a full answer with what q expects; "" when it is correct.
func check(q *query, m *dns.Msg) string {
	if m.Rcode != q.rcode {
		return fmt.Sprintf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[q.rcode])
	}
	if m.Truncated {
		return "truncated"
	}
	if len(m.Answer) != q.ancount {
		return fmt.Sprintf("%d answers, want %d: %v", len(m.Answer), q.ancount, m.Answer)
	}
	switch q.kind {
	case kindA, kindHeadless:
		got := map[netip.Addr]bool{}
		for _, rr := range m.Answer {
			a, ok := rr.(*dns.A)
			if !ok || !strings.EqualFold(a.Hdr.Name, q.name) {
				return fmt.Sprintf("unexpected record %v", rr)
			}
			ip, _ := netip.AddrFromSlice(a.A.To4())
			got[ip] = true
		}
		for _, w := range q.want {
			if !got[w] {
				return fmt.Sprintf("missing %v in %v", w, m.Answer)
			}
		}
	case kindSRV:
		s, ok := m.Answer[0].(*dns.SRV)
		if !ok || s.Port != 80 || !strings.EqualFold(s.Target, q.target) {
			return fmt.Sprintf("unexpected SRV %v, want port 80 target %s", m.Answer[0], q.target)
		}
	case kindNX:
		if len(m.Ns) == 0 {
			return "NXDOMAIN without SOA"
		}
	}
	return ""
}
