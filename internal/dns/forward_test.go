package dns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func newTestForwarder(t *testing.T, clock *fixedClock, upstreams ...string) (*Forwarder, *Metrics) {
	t.Helper()
	m := NewMetrics()
	f, err := NewForwarder(ForwarderConfig{Upstreams: upstreams, Now: clock.Now, Metrics: m, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, m
}

func forward(t *testing.T, f *Forwarder, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m, err := f.Forward(context.Background(), dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET}, false, false)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestForwardCachesPositiveAnswersForTheirTTL(t *testing.T) {
	u := startUpstream(t)
	clock := &fixedClock{t: time.Unix(1700000000, 0)}
	f, metrics := newTestForwarder(t, clock, u.addr)

	m := forward(t, f, "example.com.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 60 {
		t.Fatalf("first answer %v", m)
	}
	clock.Advance(10*time.Second + 500*time.Millisecond)
	m = forward(t, f, "EXAMPLE.com.", dns.TypeA)
	if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 50 {
		t.Errorf("cached answer %v, want TTL 50", m.Answer)
	}
	if m.Question[0].Name != "EXAMPLE.com." {
		t.Errorf("cached answer's question %v, want the query's spelling", m.Question)
	}
	if n := u.count("example.com.", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	clock.Advance(49500 * time.Millisecond) // 60 s after the first answer: expired
	forward(t, f, "example.com.", dns.TypeA)
	if n := u.count("example.com.", dns.TypeA); n != 2 {
		t.Errorf("upstream asked %d times after expiry, want 2", n)
	}
	// The cached message must not be shared with callers.
	m = forward(t, f, "example.com.", dns.TypeA)
	m.Answer[0].Header().Ttl = 12345
	if m = forward(t, f, "example.com.", dns.TypeA); m.Answer[0].Header().Ttl != 60 {
		t.Errorf("cache entry changed by a caller: TTL %d", m.Answer[0].Header().Ttl)
	}
	text := scrape(t, metrics)
	for _, want := range []string{
		`podnet_dns_cache_hits_total{type="success"} 3`,
		`podnet_dns_cache_misses_total 2`,
		`podnet_dns_cache_entries{type="success"} 1`,
		`podnet_dns_forward_requests_total{to="` + u.addr + `"} 2`,
		`podnet_dns_forward_responses_total{rcode="NOERROR",to="` + u.addr + `"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestForwardNegativeCaching(t *testing.T) {
	u := startUpstream(t)
	clock := &fixedClock{t: time.Unix(1700000000, 0)}
	f, metrics := newTestForwarder(t, clock, u.addr)
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
		ttl   time.Duration // min(SOA TTL, SOA MINIMUM)
	}{
		{"nx.example.com.", dns.TypeA, dns.RcodeNameError, 60 * time.Second},
		{"nodata.example.com.", dns.TypeAAAA, dns.RcodeSuccess, 30 * time.Second},
	} {
		m := forward(t, f, c.name, c.qtype)
		if m.Rcode != c.rcode || len(m.Answer) != 0 || len(m.Ns) != 1 {
			t.Fatalf("%s: %v", c.name, m)
		}
		clock.Advance(c.ttl - time.Second)
		m = forward(t, f, c.name, c.qtype)
		if m.Rcode != c.rcode || len(m.Ns) != 1 {
			t.Fatalf("%s cached: %v", c.name, m)
		}
		if n := u.count(c.name, c.qtype); n != 1 {
			t.Errorf("%s: upstream asked %d times within the negative TTL, want 1", c.name, n)
		}
		clock.Advance(time.Second)
		forward(t, f, c.name, c.qtype)
		if n := u.count(c.name, c.qtype); n != 2 {
			t.Errorf("%s: upstream asked %d times after the negative TTL, want 2", c.name, n)
		}
	}
	if text := scrape(t, metrics); !strings.Contains(text, `podnet_dns_cache_hits_total{type="denial"} 2`) {
		t.Errorf("denial hits not counted:\n%s", text)
	}
}

func TestForwardDoesNotCache(t *testing.T) {
	u := startUpstream(t)
	clock := &fixedClock{t: time.Unix(1700000000, 0)}
	f, _ := newTestForwarder(t, clock, u.addr)
	for _, c := range []struct {
		name  string
		rcode int
	}{
		{"fail.example.com.", dns.RcodeServerFailure},
		{"zero.example.com.", dns.RcodeSuccess},    // TTL 0
		{"nosoa.example.com.", dns.RcodeNameError}, // negative without SOA
	} {
		for i := 0; i < 2; i++ {
			if m := forward(t, f, c.name, dns.TypeA); m.Rcode != c.rcode {
				t.Errorf("%s: %s, want %s", c.name, dns.RcodeToString[m.Rcode], dns.RcodeToString[c.rcode])
			}
		}
		if n := u.count(c.name, dns.TypeA); n != 2 {
			t.Errorf("%s: upstream asked %d times, want 2 (not cached)", c.name, n)
		}
	}
}

func TestForwardRetriesTruncatedOverTCP(t *testing.T) {
	u := startUpstream(t)
	f, _ := newTestForwarder(t, &fixedClock{t: time.Unix(1700000000, 0)}, u.addr)
	m := forward(t, f, "big.example.com.", dns.TypeTXT)
	if m.Truncated || len(m.Answer) != 40 {
		t.Errorf("got %d records (truncated %v), want all 40 over TCP", len(m.Answer), m.Truncated)
	}
	if n := u.count("big.example.com.", dns.TypeTXT); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (UDP, then TCP)", n)
	}
}

func TestForwardFailsOver(t *testing.T) {
	var asked []string
	answer := func(rcode int) *dns.Msg {
		m := new(dns.Msg)
		m.Response, m.Rcode = true, rcode
		return m
	}
	f, err := NewForwarder(ForwarderConfig{
		Upstreams: []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"},
		CacheSize: -1,
		Exchange: func(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error) {
			asked = append(asked, upstream)
			switch upstream {
			case "192.0.2.1:53":
				return nil, errors.New("timeout")
			case "192.0.2.2:53":
				return answer(dns.RcodeServerFailure), nil
			}
			if m.Question[0].Name == "down.example." {
				return nil, errors.New("unreachable")
			}
			return answer(dns.RcodeNameError), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Forward(context.Background(), dns.Question{Name: "x.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, false, false)
	if err != nil || m.Rcode != dns.RcodeNameError {
		t.Fatalf("got %v, %v; want the third upstream's NXDOMAIN", m, err)
	}
	if !slices.Equal(asked, []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"}) {
		t.Errorf("asked %v", asked)
	}
	asked = nil
	m, err = f.Forward(context.Background(), dns.Question{Name: "down.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, false, false)
	if err != nil || m.Rcode != dns.RcodeServerFailure {
		t.Errorf("every upstream failing: got %v, %v; want the SERVFAIL one upstream gave", m, err)
	}
	f2, _ := NewForwarder(ForwarderConfig{Upstreams: []string{"192.0.2.1:53"}, Exchange: func(context.Context, *dns.Msg, string) (*dns.Msg, error) {
		return nil, errors.New("timeout")
	}})
	if _, err := f2.Forward(context.Background(), dns.Question{Name: "x.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, false, false); err == nil {
		t.Error("no upstream answered: want an error")
	}
}

func TestForwardPassesDNSSECBits(t *testing.T) {
	var got *dns.Msg
	f, err := NewForwarder(ForwarderConfig{Upstreams: []string{"192.0.2.1:53"}, Exchange: func(_ context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
		got = m
		r := new(dns.Msg)
		r.SetReply(m)
		return r, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Forward(context.Background(), dns.Question{Name: "x.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, true, true); err != nil {
		t.Fatal(err)
	}
	if !got.RecursionDesired || !got.CheckingDisabled || got.IsEdns0() == nil || !got.IsEdns0().Do() {
		t.Errorf("upstream query %v: want RD, CD and EDNS0 with DO", got)
	}
}

func TestCacheEvicts(t *testing.T) {
	c := newCache(cacheShards) // one entry per shard
	now := time.Unix(1700000000, 0)
	m := new(dns.Msg)
	for i := 0; i < 1000; i++ {
		c.put(cacheKey{name: strings.Repeat("a", i%50) + ".", qtype: uint16(i)}, m, false, now, 60)
	}
	if pos, neg := c.len(); pos > cacheShards || neg != 0 {
		t.Errorf("cache holds %d+%d entries, want at most %d", pos, neg, cacheShards)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\noptions ndots:5\nnameserver bogus\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamsFromResolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.2:53", "[fe80::1%eth0]:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err := os.WriteFile(p, []byte("search x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := UpstreamsFromResolvConf(p); err == nil {
		t.Error("no nameservers: want an error")
	}
}

func TestParseUpstreams(t *testing.T) {
	got, err := ParseUpstreams([]string{"1.1.1.1,8.8.8.8:5353", " [2606:4700::1111] ", "2001:db8::1", "dns.example:53"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1.1.1.1:53", "8.8.8.8:5353", "[2606:4700::1111]:53", "[2001:db8::1]:53", "dns.example:53"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ParseUpstreams([]string{"dns.example"}); err == nil {
		t.Error("host without port: want an error")
	}
}
