package dns

import (
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

type resolveCase struct {
	desc    string
	qname   string
	qtype   uint16
	qclass  uint16 // 0: IN
	forward bool   // not the index's: Resolve returns nil
	rcode   int
	answer  []string
	extra   []string
	soa     bool // the authority section is the zone's SOA
}

const soaLine = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 30"

// resolveCases covers every record of the specification (schema 1.1.0) and every negative case.
var resolveCases = []resolveCase{
	// 2.2 Schema version.
	{desc: "dns-version TXT", qname: "dns-version.cluster.local.", qtype: dns.TypeTXT,
		answer: []string{`dns-version.cluster.local. 28800 IN TXT "1.1.0"`}},
	{desc: "dns-version, wrong type: NODATA", qname: "dns-version.cluster.local.", qtype: dns.TypeA, soa: true},

	// 2.3.1 A/AAAA for a ClusterIP Service.
	{desc: "ClusterIP A", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"svc1.testns.svc.cluster.local. 30 IN A 10.96.0.1"}},
	{desc: "ClusterIP, AAAA on an IPv4 Service: NODATA", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeAAAA, soa: true},
	{desc: "ClusterIP, TXT: NODATA", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeTXT, soa: true},
	{desc: "ClusterIP, SOA at a non-apex name: NODATA", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeSOA, soa: true},
	{desc: "ClusterIP, SRV at the Service name: NODATA", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV, soa: true},
	{desc: "ClusterIP, ANY", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeANY,
		answer: []string{"svc1.testns.svc.cluster.local. 30 IN A 10.96.0.1"}},
	{desc: "IPv6 ClusterIP AAAA", qname: "svc6.testns.svc.cluster.local.", qtype: dns.TypeAAAA,
		answer: []string{"svc6.testns.svc.cluster.local. 30 IN AAAA fd00:96::1"}},
	{desc: "IPv6 ClusterIP, A: NODATA", qname: "svc6.testns.svc.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "dual-stack A", qname: "dual.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"dual.testns.svc.cluster.local. 30 IN A 10.96.0.3"}},
	{desc: "dual-stack AAAA", qname: "dual.testns.svc.cluster.local.", qtype: dns.TypeAAAA,
		answer: []string{"dual.testns.svc.cluster.local. 30 IN AAAA fd00:96::3"}},
	{desc: "LoadBalancer Service in a namespace without a Namespace object", qname: "lb.other.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"lb.other.svc.cluster.local. 30 IN A 10.96.0.20"}},
	{desc: "Service without a ClusterIP yet: NXDOMAIN", qname: "pending.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "ClusterIP Service: endpoint hostnames have no records", qname: "nope.svc1.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},

	// Case-insensitivity: the answer repeats the question's spelling.
	{desc: "mixed case", qname: "SVC1.TestNS.Svc.CLUSTER.local.", qtype: dns.TypeA,
		answer: []string{"SVC1.TestNS.Svc.CLUSTER.local. 30 IN A 10.96.0.1"}},
	{desc: "mixed case SRV", qname: "_HTTP._Tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		answer: []string{"_HTTP._Tcp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local."},
		extra:  []string{"svc1.testns.svc.cluster.local. 30 IN A 10.96.0.1"}},

	// 2.3.2 SRV for named ports.
	{desc: "SRV tcp", qname: "_http._tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		answer: []string{"_http._tcp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local."},
		extra:  []string{"svc1.testns.svc.cluster.local. 30 IN A 10.96.0.1"}},
	{desc: "SRV udp", qname: "_dns._udp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		answer: []string{"_dns._udp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 53 svc1.testns.svc.cluster.local."},
		extra:  []string{"svc1.testns.svc.cluster.local. 30 IN A 10.96.0.1"}},
	{desc: "SRV dual-stack: both addresses in Additional", qname: "_http._tcp.dual.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		answer: []string{"_http._tcp.dual.testns.svc.cluster.local. 30 IN SRV 0 100 80 dual.testns.svc.cluster.local."},
		extra:  []string{"dual.testns.svc.cluster.local. 30 IN A 10.96.0.3", "dual.testns.svc.cluster.local. 30 IN AAAA fd00:96::3"}},
	{desc: "SRV, wrong protocol: NXDOMAIN", qname: "_http._udp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "SRV, unknown port name: NXDOMAIN", qname: "_nope._tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "SRV, unnamed port has none", qname: "_8080._tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "SRV name, A: NODATA", qname: "_http._tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "_tcp below a Service is an empty non-terminal: NODATA", qname: "_tcp.svc1.testns.svc.cluster.local.", qtype: dns.TypeSRV, soa: true},

	// 2.3.3 PTR for ClusterIPs.
	{desc: "PTR ClusterIP", qname: "1.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
		answer: []string{"1.0.96.10.in-addr.arpa. 30 IN PTR svc1.testns.svc.cluster.local."}},
	{desc: "PTR IPv6 ClusterIP", qname: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
		answer: []string{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. 30 IN PTR svc6.testns.svc.cluster.local."}},
	{desc: "PTR dual-stack, both families", qname: "3.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
		answer: []string{"3.0.96.10.in-addr.arpa. 30 IN PTR dual.testns.svc.cluster.local."}},
	{desc: "PTR, unknown address: forwarded", qname: "99.0.96.10.in-addr.arpa.", qtype: dns.TypePTR, forward: true},
	{desc: "reverse name, not PTR: forwarded", qname: "1.0.96.10.in-addr.arpa.", qtype: dns.TypeA, forward: true},
	{desc: "PTR of a ClusterIP Service's endpoint: forwarded", qname: "2.5.244.10.in-addr.arpa.", qtype: dns.TypePTR, forward: true},

	// 2.4.1 Headless A/AAAA: one per ready endpoint, over several slices.
	{desc: "headless A", qname: "hdls.testns.svc.cluster.local.", qtype: dns.TypeA, answer: []string{
		"hdls.testns.svc.cluster.local. 30 IN A 10.244.1.2",
		"hdls.testns.svc.cluster.local. 30 IN A 10.244.1.3",
		"hdls.testns.svc.cluster.local. 30 IN A 10.244.1.5",
		"hdls.testns.svc.cluster.local. 30 IN A 10.244.2.2",
	}},
	{desc: "headless AAAA", qname: "hdls.testns.svc.cluster.local.", qtype: dns.TypeAAAA,
		answer: []string{"hdls.testns.svc.cluster.local. 30 IN AAAA fd00:244::2"}},
	{desc: "headless TXT: NODATA", qname: "hdls.testns.svc.cluster.local.", qtype: dns.TypeTXT, soa: true},
	{desc: "headless endpoint by hostname", qname: "web-0.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"web-0.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.3"}},
	{desc: "headless endpoint by hostname, its other family", qname: "web-0.hdls.testns.svc.cluster.local.", qtype: dns.TypeAAAA,
		answer: []string{"web-0.hdls.testns.svc.cluster.local. 30 IN AAAA fd00:244::2"}},
	{desc: "headless endpoint in the second slice", qname: "web-2.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"web-2.hdls.testns.svc.cluster.local. 30 IN A 10.244.2.2"}},
	{desc: "headless endpoint without hostname, by its system-assigned name", qname: "10-244-1-2.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"10-244-1-2.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.2"}},
	{desc: "headless endpoint with unknown readiness counts as ready", qname: "10-244-1-5.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"10-244-1-5.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.5"}},
	{desc: "headless endpoint by hostname, AAAA of an IPv4-only one: NODATA", qname: "web-2.hdls.testns.svc.cluster.local.", qtype: dns.TypeAAAA, soa: true},
	{desc: "not-ready endpoint: NXDOMAIN", qname: "web-1.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "unknown endpoint: NXDOMAIN", qname: "bogus.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "endpoint hostname's IP form is not an alias", qname: "10-244-1-3.hdls.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "headless with publishNotReadyAddresses", qname: "hdlsnr.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"hdlsnr.testns.svc.cluster.local. 30 IN A 10.244.3.2"}},
	{desc: "headless with publishNotReadyAddresses, by hostname", qname: "db-0.hdlsnr.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"db-0.hdlsnr.testns.svc.cluster.local. 30 IN A 10.244.3.2"}},
	{desc: "headless with the tolerate-unready annotation", qname: "hdlstol.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"hdlstol.testns.svc.cluster.local. 30 IN A 10.244.3.3"}},
	{desc: "headless without ready endpoints: NXDOMAIN", qname: "hdlsempty.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "headless without ready endpoints, SRV: NXDOMAIN", qname: "_http._tcp.hdlsempty.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		rcode: dns.RcodeNameError, soa: true},

	// 2.4.2 Headless SRV: one per (named port, ready endpoint), targets the endpoint names.
	{desc: "headless SRV", qname: "_http._tcp.hdls.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		answer: []string{
			"_http._tcp.hdls.testns.svc.cluster.local. 30 IN SRV 0 100 8080 10-244-1-2.hdls.testns.svc.cluster.local.",
			"_http._tcp.hdls.testns.svc.cluster.local. 30 IN SRV 0 100 8080 10-244-1-5.hdls.testns.svc.cluster.local.",
			"_http._tcp.hdls.testns.svc.cluster.local. 30 IN SRV 0 100 8080 web-0.hdls.testns.svc.cluster.local.",
			"_http._tcp.hdls.testns.svc.cluster.local. 30 IN SRV 0 100 8080 web-2.hdls.testns.svc.cluster.local.",
		},
		extra: []string{
			"10-244-1-2.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.2",
			"10-244-1-5.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.5",
			"web-0.hdls.testns.svc.cluster.local. 30 IN A 10.244.1.3",
			"web-0.hdls.testns.svc.cluster.local. 30 IN AAAA fd00:244::2",
			"web-2.hdls.testns.svc.cluster.local. 30 IN A 10.244.2.2",
		}},
	{desc: "headless SRV, unnamed slice port has none", qname: "_tcp.hdlsnr.testns.svc.cluster.local.", qtype: dns.TypeSRV,
		rcode: dns.RcodeNameError, soa: true},

	// 2.4.3 Headless PTR.
	{desc: "PTR headless endpoint with hostname", qname: "3.1.244.10.in-addr.arpa.", qtype: dns.TypePTR,
		answer: []string{"3.1.244.10.in-addr.arpa. 30 IN PTR web-0.hdls.testns.svc.cluster.local."}},
	{desc: "PTR headless endpoint without hostname", qname: "2.1.244.10.in-addr.arpa.", qtype: dns.TypePTR,
		answer: []string{"2.1.244.10.in-addr.arpa. 30 IN PTR 10-244-1-2.hdls.testns.svc.cluster.local."}},
	{desc: "PTR headless IPv6 endpoint", qname: "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
		answer: []string{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.0.d.f.ip6.arpa. 30 IN PTR web-0.hdls.testns.svc.cluster.local."}},
	{desc: "PTR not-ready endpoint: not ours", qname: "4.1.244.10.in-addr.arpa.", qtype: dns.TypePTR, forward: true},
	{desc: "PTR mixed case", qname: "3.1.244.10.IN-ADDR.ARPA.", qtype: dns.TypePTR,
		answer: []string{"3.1.244.10.IN-ADDR.ARPA. 30 IN PTR web-0.hdls.testns.svc.cluster.local."}},

	// 2.5 ExternalName.
	{desc: "ExternalName CNAME", qname: "ext.testns.svc.cluster.local.", qtype: dns.TypeCNAME,
		answer: []string{"ext.testns.svc.cluster.local. 30 IN CNAME example.com."}},
	{desc: "ExternalName, A: the CNAME (followed upstream by the server)", qname: "ext.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{"ext.testns.svc.cluster.local. 30 IN CNAME example.com."}},
	{desc: "ExternalName to a cluster name is followed", qname: "extin.testns.svc.cluster.local.", qtype: dns.TypeA,
		answer: []string{
			"extin.testns.svc.cluster.local. 30 IN CNAME SVC1.testns.svc.cluster.local.",
			"SVC1.testns.svc.cluster.local. 30 IN A 10.96.0.1",
		}},
	{desc: "ExternalName to a missing cluster name: NXDOMAIN with the CNAME", qname: "extnx.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true,
		answer: []string{"extnx.testns.svc.cluster.local. 30 IN CNAME nosuch.testns.svc.cluster.local."}},
	{desc: "ExternalName, a name below it: NXDOMAIN", qname: "www.ext.testns.svc.cluster.local.", qtype: dns.TypeCNAME,
		rcode: dns.RcodeNameError, soa: true},

	// Empty non-terminals exist (NODATA), names that do not exist are NXDOMAIN.
	{desc: "svc subtree: NODATA", qname: "svc.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "pod subtree: NODATA", qname: "pod.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "namespace: NODATA", qname: "testns.svc.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "namespace without Services: NODATA", qname: "empty.svc.cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "namespace known only from its Services: NODATA", qname: "other.svc.cluster.local.", qtype: dns.TypeNS, soa: true},
	{desc: "namespace that does not exist: NXDOMAIN", qname: "nonexist.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "Service that does not exist: NXDOMAIN", qname: "svc0.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "Service that does not exist, AAAA: NXDOMAIN", qname: "svc0.testns.svc.cluster.local.", qtype: dns.TypeAAAA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "Service in a namespace that does not exist: NXDOMAIN", qname: "svc1.nonexist.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "unknown subtree: NXDOMAIN", qname: "foo.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
	{desc: "search-path expansion of an outside name: NXDOMAIN", qname: "example.com.testns.svc.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},

	// Zone apex.
	{desc: "apex SOA", qname: "cluster.local.", qtype: dns.TypeSOA, answer: []string{soaLine}},
	{desc: "apex NS", qname: "cluster.local.", qtype: dns.TypeNS,
		answer: []string{"cluster.local. 30 IN NS ns.dns.cluster.local."},
		extra:  []string{"ns.dns.cluster.local. 30 IN A 10.96.0.10"}},
	{desc: "apex A: NODATA", qname: "cluster.local.", qtype: dns.TypeA, soa: true},
	{desc: "nameserver A", qname: "ns.dns.cluster.local.", qtype: dns.TypeA,
		answer: []string{"ns.dns.cluster.local. 30 IN A 10.96.0.10"}},
	{desc: "dns.<zone> is an empty non-terminal", qname: "dns.cluster.local.", qtype: dns.TypeA, soa: true},

	// Pod records (PodModeInsecure).
	{desc: "pod A", qname: "10-244-1-9.testns.pod.cluster.local.", qtype: dns.TypeA,
		answer: []string{"10-244-1-9.testns.pod.cluster.local. 30 IN A 10.244.1.9"}},
	{desc: "pod AAAA", qname: "fd00-244--9.testns.pod.cluster.local.", qtype: dns.TypeAAAA,
		answer: []string{"fd00-244--9.testns.pod.cluster.local. 30 IN AAAA fd00:244::9"}},
	{desc: "pod, AAAA of an IPv4 pod: NODATA", qname: "10-244-1-9.testns.pod.cluster.local.", qtype: dns.TypeAAAA, soa: true},
	{desc: "pod in a namespace known from Services", qname: "10-244-1-9.other.pod.cluster.local.", qtype: dns.TypeA,
		answer: []string{"10-244-1-9.other.pod.cluster.local. 30 IN A 10.244.1.9"}},
	{desc: "pod, not an address: NXDOMAIN", qname: "blah.testns.pod.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "pod, bad address: NXDOMAIN", qname: "10-244-1-999.testns.pod.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "pod in a namespace that does not exist: NXDOMAIN", qname: "10-244-1-9.nonexist.pod.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "pod, a name below it: NXDOMAIN", qname: "x.10-244-1-9.testns.pod.cluster.local.", qtype: dns.TypeA,
		rcode: dns.RcodeNameError, soa: true},
	{desc: "pod namespace: NODATA", qname: "testns.pod.cluster.local.", qtype: dns.TypeA, soa: true},

	// Not ours.
	{desc: "outside name: forwarded", qname: "example.com.", qtype: dns.TypeA, forward: true},
	{desc: "a suffix that only looks like the zone: forwarded", qname: "xcluster.local.", qtype: dns.TypeA, forward: true},
	{desc: "class CH in the zone: REFUSED", qname: "svc1.testns.svc.cluster.local.", qtype: dns.TypeA, qclass: dns.ClassCHAOS,
		rcode: dns.RcodeRefused},
}

func checkAnswer(t *testing.T, tc resolveCase, m *dns.Msg) {
	t.Helper()
	if m.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
	}
	wantAA := tc.rcode != dns.RcodeRefused && tc.rcode != dns.RcodeServerFailure
	if m.Authoritative != wantAA || !m.RecursionAvailable || !m.Response {
		t.Errorf("flags AA=%v RA=%v QR=%v, want AA=%v RA QR", m.Authoritative, m.RecursionAvailable, m.Response, wantAA)
	}
	if len(m.Question) != 1 || m.Question[0].Name != tc.qname {
		t.Errorf("question %v, want the query's", m.Question)
	}
	if err := sameRRs(m.Answer, rrs(t, tc.answer...)); err != nil {
		t.Errorf("answer: %v", err)
	}
	if err := sameRRs(m.Extra, rrs(t, tc.extra...)); err != nil {
		t.Errorf("additional: %v", err)
	}
	if tc.soa {
		soa, ok := soaOf(m)
		if !ok || len(m.Ns) != 1 || soa.Hdr.Name != "cluster.local." || soa.Minttl != 30 || soa.Hdr.Ttl != 30 ||
			soa.Ns != "ns.dns.cluster.local." || soa.Mbox != "hostmaster.cluster.local." {
			t.Errorf("authority %v, want the zone's SOA", m.Ns)
		}
	} else if len(m.Ns) != 0 {
		t.Errorf("authority %v, want none", m.Ns)
	}
}

func soaOf(m *dns.Msg) (*dns.SOA, bool) {
	if len(m.Ns) == 0 {
		return nil, false
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	return soa, ok
}

func TestResolve(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	r := NewResolver(ix)
	for _, tc := range resolveCases {
		t.Run(tc.desc, func(t *testing.T) {
			q := query(tc.qname, tc.qtype)
			if tc.qclass != 0 {
				q.Question[0].Qclass = tc.qclass
			}
			m := r.Resolve(q)
			if tc.forward {
				if m != nil {
					t.Fatalf("answered %v, want it forwarded", m)
				}
				return
			}
			if m == nil {
				t.Fatal("not answered")
			}
			if tc.answer == nil && tc.qtype == dns.TypeSOA && tc.qname == "cluster.local." {
				t.Fatal("bad case")
			}
			if tc.qname == "cluster.local." && tc.qtype == dns.TypeSOA {
				// The serial is the time of the last change; compare the rest.
				soa := m.Answer[0].(*dns.SOA)
				if soa.Serial < 1700000000 {
					t.Errorf("serial %d", soa.Serial)
				}
				soa.Serial = 0
			}
			if m.Id != q.Id {
				t.Errorf("id %d, want %d", m.Id, q.Id)
			}
			checkAnswer(t, tc, m)
		})
	}
}

func TestResolveNotReady(t *testing.T) {
	ix, err := NewIndex(Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(ix)
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"svc1.testns.svc.cluster.local.", dns.TypeA, dns.RcodeServerFailure},      // would be NXDOMAIN
		{"svc.cluster.local.", dns.TypeA, dns.RcodeServerFailure},                  // would be NODATA
		{"dns-version.cluster.local.", dns.TypeTXT, dns.RcodeSuccess},              // static
		{"10-1-2-3.default.pod.cluster.local.", dns.TypeA, dns.RcodeServerFailure}, // namespace unknown yet
	} {
		m := r.Resolve(query(c.name, c.qtype))
		if m.Rcode != c.rcode || len(m.Ns) != 0 {
			t.Errorf("%s: rcode %s authority %v, want %s and none", c.name, dns.RcodeToString[m.Rcode], m.Ns, dns.RcodeToString[c.rcode])
		}
	}
	if ix.Ready() {
		t.Error("ready before Replace")
	}
	ix.Replace(nil, nil, nil, nil)
	if !ix.Ready() {
		t.Error("not ready after Replace")
	}
	if m := r.Resolve(query("svc1.testns.svc.cluster.local.", dns.TypeA)); m.Rcode != dns.RcodeNameError {
		t.Errorf("after Replace: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}

func TestResolveFormErr(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	m := NewResolver(ix).Resolve(new(dns.Msg))
	if m.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: %s, want FORMERR", dns.RcodeToString[m.Rcode])
	}
}

func TestPodModes(t *testing.T) {
	f := testFixture()
	pod := func(ns, name string, ips ...string) *corev1.Pod { return newPod(ns, name, ips...) }
	pods := []*corev1.Pod{pod("testns", "a", "10.244.1.9", "fd00:244::9"), pod("testns", "done", "10.244.1.10")}
	pods[1].Status.Phase = "Succeeded"

	verified, err := NewIndex(Config{PodMode: PodModeVerified})
	if err != nil {
		t.Fatal(err)
	}
	verified.Replace(f.services, f.slices, pods, f.namespaces)
	disabled, err := NewIndex(Config{PodMode: PodModeDisabled})
	if err != nil {
		t.Fatal(err)
	}
	disabled.Replace(f.services, f.slices, nil, f.namespaces)

	for _, c := range []struct {
		ix     *Index
		name   string
		qtype  uint16
		rcode  int
		answer int
	}{
		{verified, "10-244-1-9.testns.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, 1},
		{verified, "fd00-244--9.testns.pod.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{verified, "10-244-1-9.testns.pod.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, 0}, // NODATA
		{verified, "10-244-1-8.testns.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},  // no such pod
		{verified, "10-244-1-9.other.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},   // not in that namespace
		{verified, "10-244-1-10.testns.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, 0}, // finished pod
		{verified, "testns.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, 0},
		{disabled, "10-244-1-9.testns.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
		{disabled, "pod.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
		{disabled, "svc1.testns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 1},
	} {
		m := NewResolver(c.ix).Resolve(query(c.name, c.qtype))
		if m.Rcode != c.rcode || len(m.Answer) != c.answer {
			t.Errorf("%s mode, %s %s: %s with %d answers, want %s with %d", c.ix.podMode, c.name, dns.TypeToString[c.qtype],
				dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[c.rcode], c.answer)
		}
	}

	// Pods come and go.
	verified.SetPod(pod("testns", "b", "10.244.1.11"))
	if m := NewResolver(verified).Resolve(query("10-244-1-11.testns.pod.cluster.local.", dns.TypeA)); len(m.Answer) != 1 {
		t.Errorf("added pod: %v", m)
	}
	verified.DeletePod("testns", "b")
	if m := NewResolver(verified).Resolve(query("10-244-1-11.testns.pod.cluster.local.", dns.TypeA)); m.Rcode != dns.RcodeNameError {
		t.Errorf("deleted pod: %v", m)
	}
}

func TestParsePodMode(t *testing.T) {
	for s, want := range map[string]PodMode{"": PodModeInsecure, "insecure": PodModeInsecure, "Verified": PodModeVerified, "disabled": PodModeDisabled} {
		if got, err := ParsePodMode(s); err != nil || got != want {
			t.Errorf("ParsePodMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParsePodMode("on"); err == nil {
		t.Error("ParsePodMode(on): no error")
	}
}

func TestUndash(t *testing.T) {
	for label, want := range map[string]string{
		"10-1-2-3":             "10.1.2.3",
		"fd00--1":              "fd00::1",
		"2001-db8-0-0-0-0-0-1": "2001:db8::1",
		"0-0-0-0":              "0.0.0.0",
		"10-1-2":               "",
		"10-1-2-3-4":           "",
		"10-1-2-300":           "",
		"1-2-3-4-":             "",
		"abc":                  "",
		"":                     "",
	} {
		a, ok := undash(label)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("undash(%q) = %q, want %q", label, got, want)
		}
	}
}
