package dns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// normalizeSerial zeroes the SOA serial in an answer section (it is the time of the last change).
func normalizeSerial(m *dns.Msg) {
	for _, rr := range m.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			soa.Serial = 0
		}
	}
}

// wireExchange answers a packed query the way the UDP and TCP loops do: the pre-packed fast path
// when it applies, the dns.Msg path otherwise.
func wireExchange(t *testing.T, s *Server, q *dns.Msg, udp bool) (resp *dns.Msg, fast bool) {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(newStatShard())
	out, _, _, ok := s.fastAnswer(w, b, nil, udp)
	if !ok {
		out, _, _ = s.slowAnswer(context.Background(), b, udp)
	}
	if out == nil {
		return nil, ok
	}
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("unpacking the answer: %v", err)
	}
	return m, ok
}

// TestWirePathMatchesResolver runs every resolver case through the server's wire paths, with and
// without EDNS0, and checks that the pre-packed answers say exactly what the Resolver says.
func TestWirePathMatchesResolver(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s, err := NewServer(ServerConfig{Index: ix})
	if err != nil {
		t.Fatal(err)
	}
	fastCount := 0
	for _, tc := range resolveCases {
		if tc.forward {
			continue
		}
		for _, v := range []struct{ edns, udp bool }{{false, true}, {true, true}, {false, false}, {true, false}} {
			edns := v.edns
			t.Run(fmt.Sprintf("%s/edns=%v/udp=%v", tc.desc, edns, v.udp), func(t *testing.T) {
				tc := tc
				q := query(tc.qname, tc.qtype)
				if tc.qclass != 0 {
					q.Question[0].Qclass = tc.qclass
				}
				if edns {
					q.SetEdns0(4096, true)
				}
				m, fast := wireExchange(t, s, q, v.udp)
				if fast {
					fastCount++
				}
				if m.Id != q.Id {
					t.Errorf("id %d, want %d", m.Id, q.Id)
				}
				if !m.RecursionDesired {
					t.Error("RD not copied")
				}
				opt := m.IsEdns0()
				if edns != (opt != nil) {
					t.Fatalf("OPT %v, want one only if the query had one", opt)
				}
				if opt != nil && (opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0) {
					t.Errorf("OPT %v, want size 1232, DO echoed, version 0", opt)
				}
				normalizeSerial(m)
				if tc.desc == "headless SRV" && !edns && v.udp {
					// 512 bytes hold the SRV records but not their addresses, which are optional:
					// left out, without TC.
					if len(m.Extra) != 0 || m.Truncated {
						t.Errorf("additional %v, TC %v: want none, not truncated", m.Extra, m.Truncated)
					}
					tc.extra = nil
				}
				checkAnswer(t, tc, m)
			})
		}
	}
	if fastCount < 2*len(resolveCases) {
		t.Errorf("only %d of the cases took the fast path", fastCount)
	}
}

func TestWirePathLargeAnswers(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, bigFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	q := query("big.testns.svc.cluster.local.", dns.TypeA)
	if m, fast := wireExchange(t, s, q, false); !fast || len(m.Answer) != 100 || m.Truncated {
		t.Errorf("TCP: fast %v, %d answers, TC %v; want the fast path with all 100", fast, len(m.Answer), m.Truncated)
	}
	if m, fast := wireExchange(t, s, q, true); fast || !m.Truncated {
		t.Errorf("UDP: fast %v, TC %v; want the truncating path", fast, m.Truncated)
	}
}

func TestWirePathRotatesAddresses(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	w := newWorker(newStatShard())
	b, _ := query("hdls.testns.svc.cluster.local.", dns.TypeA).Pack()
	firsts := map[string]bool{}
	for i := 0; i < 8; i++ {
		out, _, _, ok := s.fastAnswer(w, b, nil, true)
		if !ok {
			t.Fatal("not on the fast path")
		}
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if len(m.Answer) != 4 {
			t.Fatalf("%d answers", len(m.Answer))
		}
		firsts[m.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) != 4 {
		t.Errorf("first addresses seen %v, want every one in turn", firsts)
	}
}

func TestWirePathAllocations(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	w := newWorker(newStatShard())
	for _, q := range []*dns.Msg{
		query("svc1.testns.svc.cluster.local.", dns.TypeA),
		query("_http._tcp.hdls.testns.svc.cluster.local.", dns.TypeSRV),
		query("svc0.testns.svc.cluster.local.", dns.TypeAAAA),
		query("3.1.244.10.in-addr.arpa.", dns.TypePTR),
		query("10-1-2-3.testns.pod.cluster.local.", dns.TypeA),
	} {
		q.SetEdns0(1232, false)
		b, _ := q.Pack()
		if n := testing.AllocsPerRun(100, func() {
			if _, _, _, ok := s.fastAnswer(w, b, w.out[:0], true); !ok {
				t.Fatal("not on the fast path")
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per answer, want 0", q.Question[0].Name, n)
		}
	}
}

type testServer struct {
	*Server
	udp, tcp string
}

func startServer(t *testing.T, cfg ServerConfig) *testServer {
	t.Helper()
	return startServerOn(t, cfg, "127.0.0.1:0")
}

func startServerOn(t *testing.T, cfg ServerConfig, addr string) *testServer {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.ServeUDP(ctx, pc); err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.ServeTCP(ctx, l); err != nil {
			t.Errorf("ServeTCP: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		pc.Close()
		l.Close()
	})
	return &testServer{Server: s, udp: pc.LocalAddr().String(), tcp: l.Addr().String()}
}

func exchange(t *testing.T, netw, addr string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
	if o := q.IsEdns0(); o != nil {
		c.UDPSize = o.UDPSize()
	}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", netw, q.Question[0].Name, err)
	}
	return m
}

func TestServerUDPAndTCP(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s := startServer(t, ServerConfig{Index: ix, Workers: 2})
	for _, netw := range []string{"udp", "tcp"} {
		addr := s.udp
		if netw == "tcp" {
			addr = s.tcp
		}
		m := exchange(t, netw, addr, query("Svc1.TESTNS.svc.cluster.local.", dns.TypeA))
		if err := sameRRs(m.Answer, rrs(t, "Svc1.TESTNS.svc.cluster.local. 30 IN A 10.96.0.1")); err != nil || !m.Authoritative || m.IsEdns0() != nil {
			t.Errorf("%s: %v (AA %v, OPT %v)", netw, err, m.Authoritative, m.IsEdns0())
		}
		m = exchange(t, netw, addr, query("nope.testns.svc.cluster.local.", dns.TypeA))
		if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
			t.Errorf("%s NXDOMAIN: %v", netw, m)
		}
		// Names outside the zone without a forwarder are refused.
		if m = exchange(t, netw, addr, query("example.com.", dns.TypeA)); m.Rcode != dns.RcodeRefused {
			t.Errorf("%s outside name without forwarder: %s", netw, dns.RcodeToString[m.Rcode])
		}
	}
}

func TestServerTCPPipelining(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s := startServer(t, ServerConfig{Index: ix})
	conn, err := dns.Dial("tcp", s.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	names := []string{"svc1.testns.svc.cluster.local.", "example.org.", "svc6.testns.svc.cluster.local."}
	var ids []uint16
	for _, n := range names {
		q := query(n, dns.TypeA)
		ids = append(ids, q.Id)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for i, n := range names {
		m, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.Id != ids[i] || m.Question[0].Name != n {
			t.Errorf("answer %d is for %d %s, want %d %s", i, m.Id, m.Question[0].Name, ids[i], n)
		}
	}
}

// bigFixture has a headless Service with 100 ready endpoints: 100 A records, 1,600 bytes of
// answers.
func bigFixture() fixture {
	f := testFixture()
	var eps []ep
	for i := 0; i < 100; i++ {
		eps = append(eps, ep{ip: fmt.Sprintf("10.245.%d.%d", i/250, 1+i%250), ready: yes})
	}
	f.services = append(f.services, headlessService("testns", "big", port("http", corev1.ProtocolTCP, 80)))
	f.slices = append(f.slices, endpointSlice("testns", "big", "big-a", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 80)}, eps...))
	return f
}

func TestServerTruncation(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, bigFixture())
	s := startServer(t, ServerConfig{Index: ix})
	big := startServer(t, ServerConfig{Index: ix, UDPSize: 4096})
	const name = "big.testns.svc.cluster.local."
	for _, c := range []struct {
		desc      string
		addr      string
		netw      string
		edns      uint16 // 0: no EDNS0
		truncated bool
		maxLen    int
		answers   int // -1: fewer than 100
	}{
		{"UDP without EDNS0: 512 bytes", s.udp, "udp", 0, true, 512, -1},
		{"UDP, client 4096: capped at the server's 1232", s.udp, "udp", 4096, true, 1232, -1},
		{"UDP, client 1232", s.udp, "udp", 1232, true, 1232, -1},
		{"UDP, client below 512 counts as 512", s.udp, "udp", 100, true, 512, -1},
		{"UDP, server and client 4096: everything", big.udp, "udp", 4096, false, 4096, 100},
		{"TCP: everything", s.tcp, "tcp", 0, false, 65535, 100},
		{"TCP with EDNS0: everything", s.tcp, "tcp", 1232, false, 65535, 100},
	} {
		t.Run(c.desc, func(t *testing.T) {
			q := query(name, dns.TypeA)
			if c.edns != 0 {
				q.SetEdns0(c.edns, false)
			}
			cl := &dns.Client{Net: c.netw, Timeout: 2 * time.Second, UDPSize: 65535}
			m, _, err := cl.Exchange(q, c.addr)
			if err != nil {
				t.Fatal(err)
			}
			if m.Truncated != c.truncated {
				t.Errorf("TC %v, want %v", m.Truncated, c.truncated)
			}
			m.Compress = true
			if l := m.Len(); l > c.maxLen {
				t.Errorf("%d bytes, want at most %d", l, c.maxLen)
			}
			if c.answers >= 0 && len(m.Answer) != c.answers || c.answers < 0 && len(m.Answer) >= 100 {
				t.Errorf("%d answers", len(m.Answer))
			}
			if (c.edns != 0) != (m.IsEdns0() != nil) {
				t.Errorf("OPT %v", m.IsEdns0())
			}
		})
	}
}

func TestServerProtocolErrors(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s := startServer(t, ServerConfig{Index: ix})

	q := query("svc1.testns.svc.cluster.local.", dns.TypeA)
	q.SetEdns0(1232, true)
	q.IsEdns0().SetVersion(1)
	if m := exchange(t, "udp", s.udp, q); m.Rcode != dns.RcodeBadVers || m.IsEdns0() == nil || len(m.Answer) != 0 {
		t.Errorf("EDNS version 1: %v, want BADVERS", m)
	}

	q = query("svc1.testns.svc.cluster.local.", dns.TypeA)
	q.Opcode = dns.OpcodeNotify
	if m := exchange(t, "udp", s.udp, q); m.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: %s, want NOTIMP", dns.RcodeToString[m.Rcode])
	}

	q = query("svc1.testns.svc.cluster.local.", dns.TypeA)
	q.Question = append(q.Question, q.Question[0])
	if m := exchange(t, "udp", s.udp, q); m.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s, want FORMERR", dns.RcodeToString[m.Rcode])
	}

	// Garbage after a query's header: FORMERR with the query's id.
	conn, err := net.Dial("udp", s.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 0x1234 || m.Rcode != dns.RcodeFormatError || !m.Response {
		t.Errorf("garbage: %v %v, want FORMERR for id 0x1234", m, err)
	}

	// A response is not answered; the next query still is.
	resp := query("svc1.testns.svc.cluster.local.", dns.TypeA)
	resp.Response = true
	b, _ := resp.Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	b, _ = query("svc1.testns.svc.cluster.local.", dns.TypeA).Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	if n, err = conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(buf[:n]); err != nil || len(m.Answer) != 1 {
		t.Errorf("after a response packet: %v %v", m, err)
	}
}

func TestServerForwards(t *testing.T) {
	u := startUpstream(t)
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	metrics := NewMetrics()
	fwd, err := NewForwarder(ForwarderConfig{Upstreams: []string{u.addr}, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, ServerConfig{Index: ix, Forwarder: fwd, Metrics: metrics})

	m := exchange(t, "udp", s.udp, query("example.com.", dns.TypeA))
	if err := sameRRs(m.Answer, rrs(t, "example.com. 60 IN A 93.184.216.34")); err != nil || m.Authoritative || !m.RecursionAvailable {
		t.Errorf("forwarded: %v (AA %v RA %v)", err, m.Authoritative, m.RecursionAvailable)
	}
	m = exchange(t, "tcp", s.tcp, query("nx.example.com.", dns.TypeA))
	if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
		t.Errorf("forwarded NXDOMAIN: %v", m)
	}
	// ExternalName: the CNAME, then the target's records from upstream.
	m = exchange(t, "udp", s.udp, query("ext.testns.svc.cluster.local.", dns.TypeA))
	if err := sameRRs(m.Answer, rrs(t, "ext.testns.svc.cluster.local. 30 IN CNAME example.com.", "example.com. 60 IN A 93.184.216.34")); err != nil {
		t.Errorf("ExternalName: %v", err)
	}
	if _, ok := m.Answer[0].(*dns.CNAME); !ok {
		t.Errorf("the CNAME must come first: %v", m.Answer)
	}
	// ExternalName to a name upstream does not know: NXDOMAIN, the CNAME, upstream's SOA.
	ix.SetService(externalNameService("testns", "extbad", "nx.example.com"), nil)
	m = exchange(t, "udp", s.udp, query("extbad.testns.svc.cluster.local.", dns.TypeA))
	if m.Rcode != dns.RcodeNameError || len(m.Answer) != 1 || len(m.Ns) != 1 || m.Ns[0].Header().Name != "example.com." {
		t.Errorf("ExternalName to NXDOMAIN: %v", m)
	}
	// A reverse name the index does not know goes upstream.
	m = exchange(t, "udp", s.udp, query("34.216.184.93.in-addr.arpa.", dns.TypePTR))
	if err := sameRRs(m.Answer, rrs(t, "34.216.184.93.in-addr.arpa. 60 IN PTR example.com.")); err != nil {
		t.Errorf("reverse fallthrough: %v", err)
	}
	// Upstream truncation is resolved over TCP; the client then gets what fits.
	m = exchange(t, "tcp", s.tcp, query("big.example.com.", dns.TypeTXT))
	if len(m.Answer) != 40 || m.Truncated {
		t.Errorf("big answer over TCP: %d records, TC %v", len(m.Answer), m.Truncated)
	}
	m = exchange(t, "udp", s.udp, query("big.example.com.", dns.TypeTXT))
	if m.Compress = true; !m.Truncated || m.Len() > 512 {
		t.Errorf("big answer over UDP: %d bytes, TC %v", m.Len(), m.Truncated)
	}

	text := scrape(t, metrics)
	for _, want := range []string{
		`podnet_dns_requests_total{family="1",proto="udp",type="A"}`,
		`podnet_dns_requests_total{family="1",proto="tcp",type="TXT"} 1`,
		`podnet_dns_responses_total{rcode="NXDOMAIN"} 2`,
		`podnet_dns_request_duration_seconds_bucket{type="PTR",le="+Inf"} 1`,
		`podnet_dns_cache_hits_total{type="success"} 2`, // example.com for the CNAME, big.example.com over UDP
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestServerWildcardSockets answers from the address the query was sent to (IP_PKTINFO).
func TestServerWildcardSockets(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	for _, c := range []struct{ listen, query string }{
		{"0.0.0.0:0", "127.0.0.1"},
		{"[::]:0", "127.0.0.1"},
		{"[::]:0", "::1"},
	} {
		if strings.Contains(c.query, ":") {
			if l, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
				t.Logf("no IPv6 loopback: skipping %s", c.listen)
				continue
			} else {
				l.Close()
			}
		}
		s := startServerOn(t, ServerConfig{Index: ix, Workers: 1}, c.listen)
		_, p, _ := net.SplitHostPort(s.udp)
		for i := 0; i < 2; i++ { // the fast path, then the dns.Msg path (REFUSED)
			name := "svc1.testns.svc.cluster.local."
			if i == 1 {
				name = "example.com."
			}
			m := exchange(t, "udp", net.JoinHostPort(c.query, p), query(name, dns.TypeA))
			if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeRefused {
				t.Errorf("%s via %s: %v", c.listen, c.query, m)
			}
		}
	}
}

func TestServerShutdown(t *testing.T) {
	ix := newTestIndex(t, PodModeInsecure, testFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- s.ServeUDP(ctx, pc) }()
	go func() { done <- s.ServeTCP(ctx, l) }()
	// An idle TCP connection must not hold the server up.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	cancel()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("server did not stop")
		}
	}
}

func BenchmarkFastPath(b *testing.B) {
	ix := newTestIndex(b, PodModeInsecure, testFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	w := newWorker(newStatShard())
	q := query("svc1.testns.svc.cluster.local.", dns.TypeA)
	q.SetEdns0(1232, false)
	req, _ := q.Pack()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ok := s.fastAnswer(w, req, w.out[:0], true); !ok {
			b.Fatal("slow")
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	ix := newTestIndex(b, PodModeInsecure, testFixture())
	r := NewResolver(ix)
	q := query("svc1.testns.svc.cluster.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		r.Resolve(q)
	}
}

// BenchmarkServerUDP measures answers per second over loopback UDP, the clients in lockstep
// (GOMAXPROCS readers; compare with `-cpu 1`).
func BenchmarkServerUDP(b *testing.B) {
	ix := newTestIndex(b, PodModeInsecure, testFixture())
	s, _ := NewServer(ServerConfig{Index: ix})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.ServeUDP(ctx, pc); close(done) }()
	defer func() { cancel(); <-done }()
	q := query("svc1.testns.svc.cluster.local.", dns.TypeA)
	req, _ := q.Pack()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
}
