package dns

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// fakeUpstream is a real miekg/dns server on 127.0.0.1 (UDP and TCP on one port) answering a
// small fixed zone and counting the queries it gets.
type fakeUpstream struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // "name type" -> queries
}

const upstreamSOA = "example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 60"

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{seen: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(u.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		wg.Wait()
	})
	return u
}

func (u *fakeUpstream) count(name string, qtype uint16) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[strings.ToLower(name)+" "+dns.TypeToString[qtype]]
}

func (u *fakeUpstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	u.mu.Lock()
	u.seen[name+" "+dns.TypeToString[q.Qtype]]++
	u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		rr.Header().Name = q.Name
		m.Answer = append(m.Answer, rr)
	}
	soa := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Ns = append(m.Ns, rr)
	}
	switch {
	case name == "example.com." && q.Qtype == dns.TypeA:
		add("x 60 IN A 93.184.216.34")
	case name == "example.com.":
		soa(upstreamSOA)
	case name == "nx.example.com.":
		m.Rcode = dns.RcodeNameError
		soa(upstreamSOA)
	case name == "nodata.example.com.":
		soa("example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30")
	case name == "nosoa.example.com.":
		m.Rcode = dns.RcodeNameError
	case name == "fail.example.com.":
		m.Rcode = dns.RcodeServerFailure
	case name == "zero.example.com.":
		add("x 0 IN A 192.0.2.1")
	case name == "big.example.com.":
		for i := 0; i < 40; i++ {
			add("x 60 IN TXT \"" + strings.Repeat(string(rune('a'+i%26)), 100) + "\"")
		}
	case name == "34.216.184.93.in-addr.arpa." && q.Qtype == dns.TypePTR:
		add("x 60 IN PTR example.com.")
	default:
		m.Rcode = dns.RcodeNameError
		soa(upstreamSOA)
	}
	if w.RemoteAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}
